/**
 * The `/ws/inference` session (docs/protocol.md): connects, sends `init` + `start`, keeps at
 * most one frame in flight, and reconnects with exponential backoff when the connection drops,
 * at once when the server answers again or the user asks (`retryNow`).
 */

import { ErrorCode, FRAME_ERRORS as FRAME_ERROR_LIST } from "./error_codes.js";
import { ServerProbe } from "./server_probe.js";

/** Errors about one frame: the session goes on, and that frame gets no result. */
const FRAME_ERRORS = new Set(FRAME_ERROR_LIST);
/**
 * Fatal errors worth reconnecting after: a busy server, a token that a new /start renews, and a
 * fleet instance that is leaving (the next connection lands on another one: no backoff).
 */
const RETRYABLE_FATAL = new Set([ErrorCode.SERVER_BUSY, ErrorCode.TOKEN_EXPIRED, ErrorCode.DRAINING]);

/** WebSocket close codes in words (RFC 6455 section 7.4.1, and the IANA registry). */
const CLOSE_CODE_WORDS = {
  1000: "closed normally",
  1001: "the server is going away",
  1002: "protocol error",
  1003: "unsupported data",
  1005: "closed without a reason",
  1006: "connection lost",
  1007: "invalid data",
  1008: "refused by policy",
  1009: "message too big",
  1010: "a required extension is missing",
  1011: "server error",
  1012: "the server is restarting",
  1013: "the server is busy, try again later",
  1014: "bad gateway",
  1015: "TLS handshake failed",
};

/**
 * A close code in words, for the user.
 * @param {number} code  `CloseEvent.code`
 * @returns {string}
 */
export function closeCodeText(code) {
  if (code in CLOSE_CODE_WORDS) return CLOSE_CODE_WORDS[code];
  if (code >= 4000 && code <= 4999) return `closed by the application (code ${code})`;
  return `closed (code ${code})`;
}

function queueText({ position, active_sessions: active, waiting_sessions: waiting }) {
  const place = position === undefined ? "" : `position ${position} in the queue, `;
  return `${place}${active} active, ${waiting} waiting`;
}

/**
 * The page's stage toggles as `init` params.
 * @param {{detection: boolean, pose: boolean, ocr: boolean, motion: boolean, llm: boolean}} stages
 * @returns {object}
 */
export function initParams(stages) {
  return {
    use_yolo: stages.detection,
    use_yolo_pose: stages.pose,
    use_ocr: stages.ocr,
    use_motion: stages.motion,
    use_langchain: stages.llm,
  };
}

/**
 * @typedef {object} ConnectionHandlers
 * @property {(state: string, detail?: string) => void} state  connecting, waiting, running,
 *   finished, reconnecting, failed or closed
 * @property {(data: object, frame: {rttMs: number, meta: any}) => void} result  one `inference`
 * @property {(message: {code: string, message: string, fatal: boolean}) => void} error
 * @property {(text: string) => void} summary  one `llm_summary`
 * @property {(data: object) => void} models  the `models` message: what the served models are
 * @property {(count: number) => void} lost  frames sent that will never get a result
 * @property {() => void} connectFailed  an attempt closed before it opened
 * @property {() => void} reconnected  a connection opened again after one was lost (attempts
 *   that fail are not reconnections)
 */

export class InferenceConnection {
  #endpoint;
  #params;
  #backoff;
  #resultTimeoutMs;
  #on;
  #socket = null;
  #abort = null;
  #closed = true;
  #running = false;
  #fatal = null;
  #attempt = 0;
  #timer = null;
  #inFlight = null;
  #wasConnected = false;
  #url = null;
  #probe;

  /**
   * @param {object} options
   * @param {(signal: AbortSignal) => Promise<string>} options.endpoint  the URL to use, asked
   *   before every attempt (cold start and tokens live behind it)
   * @param {object} options.params  `init` params
   * @param {{minMs: number, maxMs: number, probeMs: number}} options.backoff  the delays, and
   *   how often to ask whether the server answers again while waiting
   * @param {number} options.resultTimeoutMs
   * @param {ConnectionHandlers} options.on
   */
  constructor({ endpoint, params, backoff, resultTimeoutMs, on }) {
    this.#endpoint = endpoint;
    this.#params = params;
    this.#backoff = backoff;
    this.#resultTimeoutMs = resultTimeoutMs;
    this.#on = on;
    this.#probe = new ServerProbe(backoff.probeMs);
  }

  /** Connect, and keep reconnecting until `close()`. */
  open() {
    this.#closed = false;
    this.#wasConnected = false;
    this.#abort = new AbortController();
    this.#connect();
  }

  /** Stop processing and close for good. */
  close() {
    this.#closed = true;
    this.#abort?.abort(new DOMException("stopped", "AbortError"));
    this.#stopWaiting();
    if (this.#socket) {
      this.#send({ type: "stop" });
      this.#socket.close(1000, "stopped by the user");
    }
    this.#on.state("closed");
  }

  /**
   * Choose other stages; a connected session is stopped and started again with them.
   * @param {object} params  `init` params
   */
  setParams(params) {
    this.#params = params;
    if (this.#socket?.readyState !== WebSocket.OPEN) return;
    this.#send({ type: "stop" });
    this.#releaseInFlight();
    this.#running = false;
    this.#send({ type: "init", params });
    this.#send({ type: "start" });
  }

  /** Whether a frame may be sent now: the session runs and no frame waits for its result. */
  get canSend() {
    if (this.#inFlight && performance.now() - this.#inFlight.sentAt > this.#resultTimeoutMs) {
      this.#releaseInFlight();
    }
    return this.#running && this.#inFlight === null;
  }

  /**
   * Send one JPEG frame, if `canSend`.
   * @param {ArrayBuffer} jpeg
   * @param {any} meta  handed back with its result
   * @returns {boolean} whether it was sent
   */
  sendFrame(jpeg, meta) {
    if (!this.canSend) return false;
    this.#socket.send(jpeg);
    this.#inFlight = { sentAt: performance.now(), meta };
    return true;
  }

  /** While waiting to reconnect: try now instead of when the backoff ends. */
  retryNow() {
    if (this.#timer !== null) this.#connectNow();
  }

  /** Ask for OCR on an upcoming frame. */
  requestOcr() {
    this.#send({ type: "ocr" });
  }

  async #connect() {
    this.#on.state("connecting");
    let url;
    try {
      url = await this.#endpoint(this.#abort.signal);
    } catch (error) {
      if (!this.#closed) this.#on.state("failed", error.message);
      return;
    }
    if (this.#closed) return;
    this.#url = url;
    const socket = new WebSocket(url);
    socket.binaryType = "arraybuffer";
    this.#socket = socket;
    this.#fatal = null;
    let opened = false;
    socket.onopen = () => {
      opened = true;
      this.#probe.reset();
      if (this.#wasConnected) this.#on.reconnected();
      this.#wasConnected = true;
      this.#send({ type: "init", params: this.#params });
      this.#send({ type: "start" });
    };
    socket.onmessage = (event) => this.#receive(JSON.parse(event.data));
    socket.onclose = (event) => {
      if (this.#socket !== socket) return;
      this.#socket = null;
      this.#running = false;
      this.#releaseInFlight();
      if (!opened) this.#on.connectFailed();
      if (this.#closed) return;
      if (this.#fatal && !RETRYABLE_FATAL.has(this.#fatal)) {
        this.#on.state("failed", `closed by the server (${this.#fatal})`);
        return;
      }
      if (this.#fatal === ErrorCode.DRAINING) this.#attempt = 0;
      this.#reconnectLater(event.code);
    };
  }

  #reconnectLater(closeCode) {
    const delay = Math.min(this.#backoff.maxMs, this.#backoff.minMs * 2 ** this.#attempt);
    const jittered = Math.round(delay * (0.8 + 0.4 * Math.random()));
    this.#attempt += 1;
    this.#on.state("reconnecting", `${closeCodeText(closeCode)}; retrying in ${(jittered / 1000).toFixed(1)} s`);
    this.#timer = setTimeout(() => this.#connectNow(), jittered);
    if (this.#url) this.#probe.watch(this.#url, () => this.#connectNow());
  }

  #connectNow() {
    this.#stopWaiting();
    this.#connect();
  }

  #stopWaiting() {
    clearTimeout(this.#timer);
    this.#timer = null;
    this.#probe.stop();
  }

  #receive(message) {
    switch (message.type) {
      case "queue_status":
        this.#running = message.state === "running";
        if (this.#running) this.#attempt = 0;
        this.#on.state(message.state, queueText(message));
        break;
      case "inference": {
        const frame = this.#inFlight;
        this.#inFlight = null;
        this.#on.result(message.data, {
          rttMs: frame ? performance.now() - frame.sentAt : NaN,
          meta: frame?.meta,
        });
        break;
      }
      case "error":
        if (message.fatal) this.#fatal = message.code;
        if (FRAME_ERRORS.has(message.code)) this.#releaseInFlight();
        if (message.code === ErrorCode.INTERNAL_ERROR) {
          this.#running = false;
          this.#releaseInFlight();
          this.#send({ type: "start" });
        }
        this.#on.error(message);
        break;
      case "llm_summary":
        this.#on.summary(message.data);
        break;
      case "models":
        this.#on.models(message.data);
        break;
      case "ping":
        this.#send({ type: "pong" });
        break;
      default:
        break;
    }
  }

  #releaseInFlight() {
    if (this.#inFlight === null) return;
    this.#inFlight = null;
    this.#on.lost(1);
  }

  #send(message) {
    if (this.#socket?.readyState === WebSocket.OPEN) this.#socket.send(JSON.stringify(message));
  }
}
