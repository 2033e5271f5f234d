// The content fingerprint of a settlement: what must match for a repeated request id to be the same request.
import { createHash } from 'node:crypto';
import type { CheckedSettlement } from './store-input.js';

// Bump when the canonical form changes, so old and new fingerprints can never be confused.
const FORMAT = 'v1';

/**
 * sha256 (hex) of the canonical content: user, group, mode, cost, platform, model, tokens. The key
 * (request id, API key id) is not part of it, nor are the time and the window bookkeeping: a retry
 * at a later moment is still the same request.
 */
export function settlementFingerprint(s: CheckedSettlement): string {
  const canonical = JSON.stringify([FORMAT, s.userId, s.groupId, s.mode, s.costUnits.toString(), s.platform, s.model, s.inputTokens, s.outputTokens]);
  return createHash('sha256').update(canonical).digest('hex');
}
