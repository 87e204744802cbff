/**
 * The instruction-set flags of this machine's CPU, as Linux lists them in /proc/cpuinfo (empty
 * elsewhere): which of the CPU experts' kernel sets the tests can require to run here.
 */
import { readFileSync } from 'node:fs';

function cpuinfo(): string {
  try {
    return readFileSync('/proc/cpuinfo', 'utf8');
  } catch {
    return '';
  }
}

export function cpuFlags(): Set<string> {
  const line = cpuinfo().split('\n').find((l) => /^flags\s*:/.test(l));
  return new Set(line ? line.replace(/^flags\s*:/, '').trim().split(/\s+/) : []);
}
