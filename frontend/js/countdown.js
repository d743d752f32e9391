/**
 * The boot countdown: "GPU ready in about 23 s" from the start/status API's estimate (the median
 * of recent boots, lambdas/shared/boot_times.py), then "taking longer than usual" once the
 * estimate has passed. It never shows a negative number, and it shows nothing it was not told.
 *
 * It counts on the page's own clock between answers: /status says how long ago the boot was
 * asked for (`boot_elapsed_s`), which pins the boot's start here; without it (fleet mode, or
 * only POST /start's `estimated_wait_s` so far) the wait counts from when the answer arrived.
 */

/** A whole, non-negative number of seconds, as the API sends them; anything else is ignored. */
function isSeconds(value) {
  return typeof value === "number" && Number.isFinite(value) && value >= 0;
}

export class BootCountdown {
  /** @param {HTMLElement | null} [element]  where `show` writes (hidden when there is nothing) */
  constructor(element = null) {
    this.element = element;
    /** performance.now() when the boot was asked for, or the first answer arrived. */
    this.startedAtMs = null;
    /** performance.now() when the backend should be ready. */
    this.readyAtMs = null;
    /** Boots behind the estimate (0: the configured default, no boot measured yet). */
    this.samples = 0;
  }

  /** POST /start's answer: `estimated_wait_s` from now. */
  started(body, nowMs) {
    if (!isSeconds(body?.estimated_wait_s)) return;
    this.startedAtMs ??= nowMs;
    this.readyAtMs = nowMs + body.estimated_wait_s * 1000;
  }

  /** GET /status's answer: `boot_estimate_s` (> 0), `boot_samples` and `boot_elapsed_s`. */
  status(body, nowMs) {
    const estimateS = body?.boot_estimate_s;
    if (!isSeconds(estimateS) || estimateS === 0) return;
    this.samples = isSeconds(body.boot_samples) ? body.boot_samples : 0;
    if (isSeconds(body.boot_elapsed_s)) this.startedAtMs = nowMs - body.boot_elapsed_s * 1000;
    else if (this.readyAtMs !== null) return; // /start's wait stands: it knew the uptime
    this.startedAtMs ??= nowMs;
    this.readyAtMs = this.startedAtMs + estimateS * 1000;
  }

  /**
   * The words for now, or null before any answer gave an estimate.
   * @param {number} nowMs  performance.now()
   * @returns {string | null}
   */
  text(nowMs) {
    if (this.readyAtMs === null) return null;
    const leftS = Math.ceil((this.readyAtMs - nowMs) / 1000);
    if (leftS > 0) return `GPU ready in about ${leftS} s`;
    const usual = this.samples > 0 ? "usual" : "estimated";
    const soFarS = Math.max(0, Math.round((nowMs - this.startedAtMs) / 1000));
    return `taking longer than ${usual} (${soFarS} s so far); still starting`;
  }

  /** Write `text(nowMs)` into the element, hidden while there is none. */
  show(nowMs) {
    if (!this.element) return;
    const text = this.text(nowMs);
    this.element.hidden = text === null;
    this.element.textContent = text ?? "";
  }

  /** Hide the element (the wait is over, or was given up). */
  hide() {
    if (this.element) this.element.hidden = true;
  }
}
