// Structured JSON logs (pino) with redaction, so credentials cannot reach a log line even by accident.
import { pino, type DestinationStream, type Logger } from 'pino';

export type { Logger } from 'pino';

/**
 * The gateway never logs headers or keys on purpose; these paths are the safety net for a
 * header object or a key that someone logs later anyway.
 */
export const REDACTED_PATHS: readonly string[] = [
  'authorization',
  'headers.authorization',
  'headers["x-api-key"]',
  'req.headers.authorization',
  'req.headers["x-api-key"]',
  'apiKey',
  'key',
  'adminToken',
  'upstreamApiKey',
  '*.authorization',
  '*.apiKey',
  '*.key',
  '*.adminToken',
  '*.upstreamApiKey',
];

export function createLogger(level: string, destination?: DestinationStream): Logger {
  const options = {
    level,
    base: { service: 'billing-gateway' },
    redact: { paths: [...REDACTED_PATHS], censor: '[redacted]' },
  };
  return destination ? pino(options, destination) : pino(options);
}
