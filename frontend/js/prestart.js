/**
 * Pre-start (config.js `preStart`, off by default): POST /start as soon as the page opens, so the
 * GPU boots while the visitor looks rather than after they press Start. The page says so beside
 * the Start button, with what an unused pre-start costs (`preStartCost`, from the stack).
 */

import { requestStart } from "./coldstart.js";

/**
 * The words beside Start, or null when pre-start is off.
 * @param {{preStart: boolean, preStartCost: string | null}} config
 * @returns {string | null}
 */
export function preStartNote(config) {
  if (!config.preStart) return null;
  const cost = config.preStartCost ? ` ${config.preStartCost}` : "";
  return `Pre-start is on: opening this page starts the GPU.${cost}`;
}

/**
 * Show the note and, unless `autoStart` starts the session anyway, ask for the start once.
 * @param {object} config  the page's settings (config.js)
 * @param {HTMLElement} note  where the note goes
 * @returns {Promise<string>} "off", "started" (200), or "refused: <why>"; a refusal is only
 *   reported: pressing Start runs the cold start, which retries what can be retried
 */
export async function preStart(config, note) {
  const text = preStartNote(config);
  note.hidden = text === null;
  note.textContent = text ?? "";
  if (text === null || config.autoStart) return "off";
  const { status, body } = await requestStart(config.startApiUrl, config.apiKey);
  return status === 200 ? "started" : `refused: ${body.message ?? `HTTP ${status}`}`;
}
