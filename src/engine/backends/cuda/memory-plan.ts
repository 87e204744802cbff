/**
 * The CUDA backend's names for the memory plan's pieces it uses at run time; the plan itself is
 * GPU-free and lives in src/engine/plan (also used by `klc plan`).
 */
export { layerWorkspaceBytes, LM_HEAD_ROWS } from '../../plan/workspace';
export { gib } from '../../plan/sizes';
