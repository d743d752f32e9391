/**
 * The page's settings: the defaults below, overridden by an optional `config.json` served next
 * to index.html. Without `startApiUrl` the page runs in local mode and connects straight to a
 * backend; with it (production) it first starts the GPU instance through the start/status API.
 * The stack's CloudFront front door serves this page with `{"startApiUrl": "/"}`: the API and the
 * WebSocket on the page's own origin.
 */

/** Every setting and its default. */
const DEFAULTS = Object.freeze({
  /** Production: base URL of the start/status API (POST {url}/start, GET {url}/status). A path
   * ("/", as the front door's config.json has it) means the API is on this page's origin, and
   * then so is the WebSocket (`/ws/inference`), whatever host the API's `endpoint` names; an
   * absolute URL means the WebSocket goes to the `endpoint` the API answers. */
  startApiUrl: null,
  /** Production: the API Gateway key sent as `x-api-key`. It identifies the page for the usage
   * plan's throttling and quota; it is not a secret (anyone can read it from this file). */
  apiKey: null,
  /** Local mode: the WebSocket to use; null means this page's own origin, `/ws/inference`. */
  wsUrl: null,
  /** Connect and start as soon as the page has a picture; the stack's config.json turns it off, so
   * loading the page never boots the GPU (the visitor presses Start). */
  autoStart: true,
  /** Production, off by default: POST /start as soon as the page opens, so the GPU boots while
   * the visitor looks, instead of when they press Start. Every opening of the page then starts
   * the GPU: one nobody uses runs until idle_stop stops it (`preStartCost` says what that costs
   * at most; docs/frontend.md, "Pre-start"). */
  preStart: false,
  /** Production: the words shown beside pre-start, e.g. "an unused pre-start costs at most
   * $0.21 (g4dn.xlarge, 24 min)"; null shows none. */
  preStartCost: null,
  /** Frames are downscaled to fit this box (aspect kept) and sent as JPEG of this quality. */
  frameWidth: 320,
  frameHeight: 240,
  jpegQuality: 0.7,
  /** Reconnect delays: doubled after each failed attempt, from min to max, with jitter. */
  reconnectMinMs: 500,
  reconnectMaxMs: 8000,
  /** While waiting to reconnect, ask the server's `/health` this often: once it answers again
   * after a failed ask, reconnect at once instead of waiting out the delay. */
  reconnectProbeMs: 500,
  /** A frame without an answer after this long counts as lost and frees the slot. */
  resultTimeoutMs: 10000,
  /** Cold start: how often to poll GET /status, and when to give up. */
  statusPollMs: 2000,
  coldStartTimeoutS: 900,
  /** How overlays meet the video: "sync" shows the video delayed by the measured round trip
   * and draws on each picture the result of that very picture (interpolated between results);
   * "live" shows the video at once with the last result's boxes moved on (docs/frontend.md). */
  displayMode: "sync",
  /** Live mode: boxes are moved on at most this many result updates (processed frames) ahead. */
  maxExtrapolationFrames: 1.5,
  /** Which stages run at first; the toggles on the page change them. */
  stages: { detection: true, pose: true, ocr: false, motion: true, llm: false },
});

/** The values `displayMode` takes. */
export const DISPLAY_MODES = Object.freeze(["sync", "live"]);

/**
 * Check a display mode (from `config.json` or the page's control).
 * @param {unknown} mode
 * @param {string} [where]  named in the error
 * @returns {"sync" | "live"}
 * @throws {Error} naming the allowed values
 */
export function checkDisplayMode(mode, where = "displayMode") {
  if (!DISPLAY_MODES.includes(mode)) {
    throw new Error(`${where} must be ${DISPLAY_MODES.map((m) => `"${m}"`).join(" or ")}, not ${JSON.stringify(mode)}`);
  }
  return /** @type {"sync" | "live"} */ (mode);
}

/**
 * Load `config.json` (relative to the page) over the defaults; a missing file means defaults.
 * @param {string} [url]
 * @returns {Promise<typeof DEFAULTS>}
 */
export async function loadConfig(url = "config.json") {
  const response = await fetch(url, { cache: "no-store" });
  if (response.status === 404) return { ...DEFAULTS, stages: { ...DEFAULTS.stages } };
  if (!response.ok) throw new Error(`could not load ${url}: HTTP ${response.status}`);
  let overrides;
  try {
    overrides = await response.json();
  } catch (error) {
    throw new Error(`${url} is not valid JSON (${error.message}); fix or remove it`);
  }
  const unknown = Object.keys(overrides).filter((key) => !(key in DEFAULTS));
  if (unknown.length) throw new Error(`${url}: unknown setting(s) ${unknown.join(", ")}`);
  if ("displayMode" in overrides) checkDisplayMode(overrides.displayMode, `${url}: displayMode`);
  const config = { ...DEFAULTS, ...overrides, stages: { ...DEFAULTS.stages, ...overrides.stages } };
  checkPreStart(config, url);
  return config;
}

/**
 * Check the pre-start settings: a boolean, a text or null, and only with a start/status API.
 * @param {typeof DEFAULTS} config
 * @param {string} [where]  named in the error
 * @throws {Error} naming the setting and the value
 */
export function checkPreStart(config, where = "config.json") {
  if (typeof config.preStart !== "boolean") {
    throw new Error(`${where}: preStart must be true or false, not ${JSON.stringify(config.preStart)}`);
  }
  if (config.preStartCost !== null && typeof config.preStartCost !== "string") {
    throw new Error(`${where}: preStartCost must be a text or null, not ${JSON.stringify(config.preStartCost)}`);
  }
  if (config.preStart && !config.startApiUrl) {
    throw new Error(`${where}: preStart needs startApiUrl (it starts the GPU through the start/status API)`);
  }
}

/**
 * The WebSocket URL of local mode: the configured one, else this origin's `/ws/inference`.
 * @param {typeof DEFAULTS} config
 * @returns {string}
 */
export function localEndpoint(config) {
  return config.wsUrl || ownOriginEndpoint();
}

/**
 * The WebSocket URL of production, before its token: this origin's when the start/status API is
 * on it (`startApiUrl` is a path), else the `endpoint` the API answered.
 * @param {typeof DEFAULTS} config
 * @param {string} apiEndpoint
 * @returns {string}
 */
export function sessionEndpoint(config, apiEndpoint) {
  return config.startApiUrl.startsWith("/") ? ownOriginEndpoint() : apiEndpoint;
}

/** This page's origin's `/ws/inference` (wss on https pages). */
function ownOriginEndpoint() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/ws/inference`;
}
