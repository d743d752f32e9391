/**
 * The pictures the page showed recently, keyed by capture time: the synchronised display mode
 * shows them with a delay and sends frames from them, so every result belongs to a stored
 * picture. Bounded by age and by bytes; a picture that falls out is handed to `release`.
 */

/** Keep at most this span of pictures (newest capture time minus oldest). */
export const HISTORY_MAX_AGE_MS = 2000;
/** And at most this many bytes of them (640x480 RGBA: 1.2 MB a picture, about 100 pictures). */
export const HISTORY_MAX_BYTES = 128 * 1024 * 1024;

/**
 * @typedef {object} StoredFrame
 * @property {number} id  1, 2, 3... in capture order
 * @property {number} capturedAt  performance.now() when the picture was taken
 * @property {any} picture  what was stored (the page: `{element, width, height}`)
 * @property {number} bytes  its memory
 */

export class FrameHistory {
  /** @type {StoredFrame[]} */
  #frames = [];
  #bytes = 0;
  #nextId = 1;

  /**
   * @param {object} [options]
   * @param {number} [options.maxAgeMs]
   * @param {number} [options.maxBytes]
   * @param {(picture: any) => void} [options.release]  called for every picture dropped
   */
  constructor({ maxAgeMs = HISTORY_MAX_AGE_MS, maxBytes = HISTORY_MAX_BYTES, release = () => {} } = {}) {
    this.maxAgeMs = maxAgeMs;
    this.maxBytes = maxBytes;
    this.release = release;
  }

  /**
   * Store a picture; the oldest ones go while the history is over its bounds (the newest stays).
   * @param {number} capturedAt  later than every stored one
   * @param {any} picture
   * @param {number} bytes
   * @returns {StoredFrame}
   */
  add(capturedAt, picture, bytes) {
    const frame = { id: this.#nextId++, capturedAt, picture, bytes };
    this.#frames.push(frame);
    this.#bytes += bytes;
    while (this.#frames.length > 1 && (capturedAt - this.#frames[0].capturedAt > this.maxAgeMs || this.#bytes > this.maxBytes)) {
      this.#drop(this.#frames.shift());
    }
    return frame;
  }

  /** @returns {StoredFrame | null} the latest picture */
  newest() {
    return this.#frames.at(-1) ?? null;
  }

  /**
   * The picture to show at display time `time`: the newest taken at or before it, else (the
   * history does not reach back that far) the oldest.
   * @param {number} time
   * @returns {StoredFrame | null}
   */
  at(time) {
    for (let i = this.#frames.length - 1; i >= 0; i--) {
      if (this.#frames[i].capturedAt <= time) return this.#frames[i];
    }
    return this.#frames[0] ?? null;
  }

  /** Pictures stored. */
  get size() {
    return this.#frames.length;
  }

  /** Bytes stored. */
  get bytes() {
    return this.#bytes;
  }

  /** Forget every picture (stopped, reconnected, another source or mode). */
  clear() {
    for (const frame of this.#frames.splice(0)) this.#drop(frame);
  }

  #drop(frame) {
    this.#bytes -= frame.bytes;
    this.release(frame.picture);
  }
}
