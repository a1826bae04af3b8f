// Owns the progress bars on stderr: redrawn in place on a terminal, one summary line per phase otherwise.

export interface ProgressSink {
  isTTY?: boolean;
  columns?: number;
  write(text: string): boolean;
}

const WIDTH = 28;
const REDRAW_MS = 100;

export class ProgressBar {
  private done = 0;
  private lastDraw = 0;
  private readonly started = performance.now();
  private finished = false;

  constructor(
    private readonly label: string,
    private readonly total: number,
    private readonly out: ProgressSink = process.stderr,
  ) {
    if (out.isTTY) this.draw();
  }

  update(done: number): void {
    this.done = Math.min(done, this.total);
    const now = performance.now();
    if (this.out.isTTY && (now - this.lastDraw >= REDRAW_MS || this.done === this.total)) this.draw();
  }

  /** Ends the bar with a final line; `note` replaces the count (e.g. a rate). */
  finish(note?: string): void {
    if (this.finished) return;
    this.finished = true;
    const seconds = ((performance.now() - this.started) / 1000).toFixed(1);
    const line = `${this.label}: ${note ?? `${this.done}/${this.total}`} in ${seconds} s`;
    this.out.write(this.out.isTTY ? `\r\x1b[2K${line}\n` : `${line}\n`);
  }

  private draw(): void {
    this.lastDraw = performance.now();
    const fraction = this.total > 0 ? this.done / this.total : 1;
    const filled = Math.round(fraction * WIDTH);
    const bar = `${'█'.repeat(filled)}${'░'.repeat(WIDTH - filled)}`;
    const seconds = ((this.lastDraw - this.started) / 1000).toFixed(1);
    const text = `${this.label} ${bar} ${this.done}/${this.total} ${(fraction * 100).toFixed(0)}% ${seconds} s`;
    const width = this.out.columns ?? 100;
    this.out.write(`\r\x1b[2K${text.slice(0, width - 1)}`);
  }
}

/** One line on stderr, between bars. */
export const note = (text: string): void => {
  process.stderr.write(`${text}\n`);
};
