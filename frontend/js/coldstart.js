/**
 * Cold start (production): ask the start-server API to boot the GPU instance, then poll the
 * status API until the backend answers ready.
 *
 * The contract (lambdas/start_server, lambdas/status; JSON bodies, CORS by the API):
 * - POST {api}/start
 *   200 {state, endpoint, estimated_wait_s, token, token_expires_at}: started or already up;
 *   409/429/503 {error, message, retryable, retry_after_s} (+ Retry-After): try again later;
 *   other codes: a failure the user cannot fix by waiting.
 * - GET {api}/status
 *   200 {state, endpoint, ready, backend, boot_estimate_s, boot_samples, boot_elapsed_s}:
 *   `ready` once the backend's /ready answered 200; `boot_estimate_s` the median of the
 *   `boot_samples` most recent boots (up to 10; 0 samples: the stack's bootEstimateSeconds),
 *   each timed from the start request to the backend's first /ready 200; `boot_elapsed_s` the
 *   seconds since this boot was requested while it boots, else null (always null in fleet
 *   mode); `boot_estimate_problem` (optional) why the history could not be read. The page
 *   counts down from them (countdown.js).
 */

/** Longest Retry-After the page waits by itself; a longer one (the daily budget) stops it. */
const MAX_RETRY_WAIT_S = 300;

/**
 * Start the backend and wait until it is ready.
 * @param {string} apiUrl  base URL of the start/status API
 * @param {object} options
 * @param {string | null} options.apiKey  sent as `x-api-key` (API key + usage plan)
 * @param {number} options.pollMs  delay between status polls (and between network retries)
 * @param {number} options.timeoutS  give up after this long
 * @param {(state: string, detail: string) => void} options.onProgress
 * @param {AbortSignal} options.signal  aborts the wait (the user pressed Stop)
 * @param {import("./countdown.js").BootCountdown} [options.countdown]  fed every answer
 * @returns {Promise<{endpoint: string, token: string, expiresAt: number}>}
 * @throws {Error} when waiting cannot help (budget spent, a server fault, the time limit)
 */
export async function coldStart(apiUrl, { apiKey, pollMs, timeoutS, onProgress, signal, countdown }) {
  const base = apiUrl.replace(/\/+$/, "");
  const deadline = performance.now() + timeoutS * 1000;
  const checkTime = () => {
    if (performance.now() > deadline) {
      throw new Error(`the server was not ready within ${timeoutS} s; try again later`);
    }
  };

  let started;
  for (;;) {
    checkTime();
    const answer = await request(`${base}/start`, "POST", apiKey, signal);
    if (answer.status === 200) {
      started = answer.body;
      break;
    }
    const waitS = retryDelayS(answer);
    if (waitS === null) throw new Error(failureText("start", answer));
    onProgress(answer.body.state ?? "unavailable", `${failureText("start", answer)}; retrying`);
    await sleep(waitS * 1000, signal);
  }
  const estimate = `boot estimate ${started.estimated_wait_s} s`;
  countdown?.started(started, performance.now());
  onProgress(started.state, estimate);

  for (;;) {
    const answer = await request(`${base}/status`, "GET", apiKey, signal);
    if (answer.status === 200) countdown?.status(answer.body, performance.now());
    if (answer.status === 200 && answer.body.ready === true) {
      return {
        endpoint: started.endpoint ?? answer.body.endpoint,
        token: started.token,
        expiresAt: started.token_expires_at,
      };
    }
    if (answer.status !== 200 && retryDelayS(answer) === null) {
      throw new Error(failureText("status", answer));
    }
    onProgress(answer.body.state ?? "unknown", answer.status === 200 ? estimate : failureText("status", answer));
    checkTime();
    await sleep(pollMs, signal);
  }
}

/**
 * Pre-start: one POST /start when the page opens, so the GPU boots while the visitor looks
 * (config.js `preStart`). Its answer is only reported: pressing Start runs `coldStart`, which
 * retries what can be retried.
 * @param {string} apiUrl
 * @param {string | null} apiKey
 * @returns {Promise<{status: number, body: any}>}
 */
export async function requestStart(apiUrl, apiKey) {
  const { status, body } = await request(`${apiUrl.replace(/\/+$/, "")}/start`, "POST", apiKey, new AbortController().signal);
  return { status, body };
}

/**
 * One JSON request; a network failure is reported as status 0 (retryable), like a 503.
 * @returns {Promise<{status: number, body: any, retryAfterS: number | null}>}
 */
async function request(url, method, apiKey, signal) {
  const headers = apiKey ? { "x-api-key": apiKey } : {};
  let response;
  try {
    response = await fetch(url, { method, headers, signal, cache: "no-store" });
  } catch (error) {
    if (signal.aborted) throw error;
    return { status: 0, body: { message: `cannot reach ${url}`, retryable: true }, retryAfterS: null };
  }
  let body;
  try {
    body = await response.json();
  } catch {
    body = { message: `HTTP ${response.status} with a body that is not JSON` };
  }
  const header = Number(response.headers.get("Retry-After"));
  return { status: response.status, body, retryAfterS: Number.isFinite(header) && header > 0 ? header : null };
}

/** Seconds to wait before retrying a refused request, or null if waiting will not help. */
function retryDelayS(answer) {
  if (!answer.body.retryable) return null;
  const waitS = answer.retryAfterS ?? answer.body.retry_after_s ?? 2;
  return waitS <= MAX_RETRY_WAIT_S ? waitS : null;
}

function failureText(what, answer) {
  const code = answer.body.error ? ` (${answer.body.error})` : "";
  return `${what}: ${answer.body.message ?? `HTTP ${answer.status}`}${code}`;
}

function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(timer);
      reject(signal.reason);
    }, { once: true });
  });
}
