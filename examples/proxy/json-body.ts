// Reads a JSON request body with a size limit (413 without buffering more than the limit), without a body-parser package.
import type { IncomingMessage } from 'node:http';
import { gatewayErrors } from './gateway-errors.js';

/** A parsed body and the bytes it came in (an upper bound on its text in any encoding a tokenizer sees). */
export interface JsonBody {
  value: unknown;
  bytes: number;
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
      try {
        resolve({ value: JSON.parse(Buffer.concat(chunks, size).toString('utf8')), bytes: size });
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
