/** The reference backend against the golden outputs of transformers 5.17 (cases in tiny-kimi-cases.ts). */
import { tinyKimiGoldenCases } from './tiny-kimi-cases';

tinyKimiGoldenCases('reference', { pinKvEps: true });
