// Reads a JSON request body with a size limit (413 without buffering more than the limit), without a body-parser package.
import type { IncomingMessage } from 'node:http';
import { gatewayErrors } from './gateway-errors.js';

/** A parsed body and the bytes it came in (an upper bound on its text in any encoding a tokenizer sees). */
export interface JsonBody {
  value: unknown;
  bytes: number;
}

/**
 * Deepest nesting of arrays and objects a body may have. Real chat requests nest a handful of
 * levels; a body nested thousands deep would overflow the stack of whatever walks it later (error
 * messages, the upstream's serializer), so it is refused before anything reads it.
 */
export const MAX_JSON_DEPTH = 64;

/** Whether the JSON text nests arrays and objects deeper than `max` (strings are skipped). */
export function nestsDeeperThan(text: string, max: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c /* backslash: skip the escaped character */) i++;
      else if (c === 0x22 /* " */) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b /* [ */ || c === 0x7b /* { */) {
      if (++depth > max) return true;
    } else if (c === 0x5d /* ] */ || c === 0x7d /* } */) depth--;
  }
  return false;
}

/** The parsed body; an empty body reads as undefined. See readJsonRequest. */
export async function readJsonBody(req: IncomingMessage, limitBytes: number): Promise<unknown> {
  return (await readJsonRequest(req, limitBytes)).value;
}

/**
 * Resolves the parsed body and its size; an empty body reads as undefined. Throws GatewayError 413 or 400.
 * An oversized body is read to its end and discarded before the 413 is sent (as body-parser
 * does): answering while the client is still writing makes many clients see a reset instead.
 */
export function readJsonRequest(req: IncomingMessage, limitBytes: number): Promise<JsonBody> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const declared = Number(req.headers['content-length']);
    let tooLarge = Number.isFinite(declared) && declared > limitBytes;

    const cleanup = () => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('close', onClose);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limitBytes) tooLarge = true;
      if (tooLarge) chunks.length = 0;
      else chunks.push(chunk);
    };
    const onEnd = () => {
      cleanup();
      if (tooLarge) return reject(gatewayErrors.tooLarge(limitBytes));
      if (size === 0) return resolve({ value: undefined, bytes: 0 });
      const text = Buffer.concat(chunks, size).toString('utf8');
      if (nestsDeeperThan(text, MAX_JSON_DEPTH)) return reject(gatewayErrors.badRequest(`The request body nests deeper than ${MAX_JSON_DEPTH} levels.`));
      try {
        resolve({ value: JSON.parse(text), bytes: size });
      } catch {
        reject(gatewayErrors.badRequest('The request body is not valid JSON.'));
      }
    };
    const onError = (error: Error) => {
      cleanup();
      reject(error);
    };
    // A client that goes away mid-body: no 'end' will come.
    const onClose = () => onError(new Error('request aborted by the client'));
    req.on('data', onData);
    req.once('end', onEnd);
    req.once('error', onError);
    req.once('close', onClose);
  });
}
