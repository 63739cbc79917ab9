// The pipeline's option vocabulary, in a module of its own with no imports, so the options layer
// can offer the choices without loading the tensor or collective code behind them.
export const SCHEDULES = ['gpipe', '1f1b'] as const;
export type ScheduleName = (typeof SCHEDULES)[number];
export const BALANCES = ['flops', 'params'] as const;
export type Balance = (typeof BALANCES)[number];
