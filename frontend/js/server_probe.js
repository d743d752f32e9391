/**
 * Tells when a server that stopped answering answers again, so a reconnect need not wait out its
 * backoff: while the page waits to reconnect it asks `GET /health` on the WebSocket URL's origin
 * every `intervalMs`. A WebSocket attempt per poll would cost the server a session handshake each
 * time; browser `online` events only see the local network, never the server coming back.
 */

/**
 * The `/health` URL on a WebSocket URL's origin (`wss:` -> `https:`), without its query (tokens).
 * @param {string} wsUrl
 * @returns {string}
 */
export function healthUrl(wsUrl) {
  const url = new URL(wsUrl);
  url.protocol = url.protocol === "wss:" ? "https:" : "http:";
  url.pathname = "/health";
  url.search = "";
  url.hash = "";
  return url.href;
}

export class ServerProbe {
  #intervalMs;
  #fetch;
  #timer = null;
  #watching = 0;
  #down = false;

  /**
   * @param {number} intervalMs  time between two polls
   * @param {(url: string, init: RequestInit) => Promise<Response>} [fetchImpl]
   */
  constructor(intervalMs, fetchImpl = (url, init) => fetch(url, init)) {
    this.#intervalMs = intervalMs;
    this.#fetch = fetchImpl;
  }

  /**
   * Poll until `stop()`; call `onBack` (and stop) when the server answers after a poll it did not
   * answer. A server that never stopped answering (one that refuses sessions while draining, say)
   * never triggers it: the backoff then runs its course.
   * @param {string} wsUrl  the WebSocket URL the page connects to
   * @param {() => void} onBack
   */
  watch(wsUrl, onBack) {
    this.stop();
    const watching = this.#watching;
    const url = healthUrl(wsUrl);
    const poll = async () => {
      const answers = await this.#answers(url);
      if (watching !== this.#watching) return;
      if (answers && this.#down) {
        this.#down = false;
        this.stop();
        onBack();
        return;
      }
      if (!answers) this.#down = true;
      this.#timer = setTimeout(poll, this.#intervalMs);
    };
    poll();
  }

  /** Stop polling (what was learnt about the server is kept for the next `watch`). */
  stop() {
    this.#watching += 1;
    clearTimeout(this.#timer);
    this.#timer = null;
  }

  /** The server answered (a connection opened): it is not down. */
  reset() {
    this.#down = false;
  }

  /** Whether the server answers `/health` with a success (a proxy's 502 for it is no answer). */
  async #answers(url) {
    try {
      const timeoutMs = Math.max(this.#intervalMs, 2000);
      const response = await this.#fetch(url, { cache: "no-store", signal: AbortSignal.timeout(timeoutMs) });
      return response.ok;
    } catch {
      return false;
    }
  }
}
