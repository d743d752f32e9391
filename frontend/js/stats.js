/** The page's own counters: render and inference rates, latency, frames sent, lost and dropped. */

/** Events per second over a sliding window. */
class RateMeter {
  #times = [];

  /** @param {number} windowMs */
  constructor(windowMs = 1000) {
    this.windowMs = windowMs;
  }

  /** @param {number} now  performance.now() of one event */
  tick(now) {
    this.#times.push(now);
    this.#trim(now);
  }

  /**
   * @param {number} now
   * @returns {number} events per second over the window ending at `now`
   */
  rate(now) {
    this.#trim(now);
    return (this.#times.length * 1000) / this.windowMs;
  }

  #trim(now) {
    while (this.#times.length && this.#times[0] <= now - this.windowMs) this.#times.shift();
  }
}

/** Every counter the page shows (and exposes to tests as `window.cvstack.stats`). */
export class Stats {
  constructor() {
    this.render = new RateMeter(1000);
    this.inference = new RateMeter(3000);
    this.framesRendered = 0;
    this.framesSent = 0;
    this.results = 0;
    this.latencyMs = NaN;
    this.lostFrames = 0;
    this.serverDroppedFrames = 0;
    this.reconnects = 0;
    this.errorResults = 0;
  }

  /** @param {number} now */
  rendered(now) {
    this.framesRendered += 1;
    this.render.tick(now);
  }

  /**
   * @param {number} now
   * @param {number} rttMs  frame sent -> its result
   * @param {number} serverDropped  the result's `dropped_frames`
   * @param {boolean} [hasErrors]  the result carries stage errors: it is counted apart and
   *   does not feed the inference rate or the latency (a failing stage answers fast and empty)
   */
  resultArrived(now, rttMs, serverDropped, hasErrors = false) {
    this.results += 1;
    this.serverDroppedFrames = serverDropped;
    if (hasErrors) {
      this.errorResults += 1;
      return;
    }
    this.inference.tick(now);
    if (Number.isFinite(rttMs)) this.latencyMs = Number.isFinite(this.latencyMs) ? 0.8 * this.latencyMs + 0.2 * rttMs : rttMs;
  }

  /**
   * A plain snapshot for display and tests.
   * @param {number} now
   */
  snapshot(now) {
    return {
      at: now,
      renderFps: this.render.rate(now),
      inferenceFps: this.inference.rate(now),
      latencyMs: this.latencyMs,
      framesRendered: this.framesRendered,
      framesSent: this.framesSent,
      results: this.results,
      errorResults: this.errorResults,
      droppedFrames: this.lostFrames + this.serverDroppedFrames,
      lostFrames: this.lostFrames,
      serverDroppedFrames: this.serverDroppedFrames,
      reconnects: this.reconnects,
    };
  }
}
