// Growing a request's hold from the public API (docs/stream-metering.md): the amount checked as
// exact money, the outcome reported in USD. Shared by ctx.state.billing.extendHold and the
// reservation handle of core.check().
import type { BillingRequest, HoldExtension, HoldUnavailable } from './billing-request.js';
import type { BillingErrorCode } from './errors.js';
import { formatUsd, MoneyError, parseCostUsd, type Usd } from './money.js';

/** How a request to grow a hold ended, amounts in USD. */
export type HoldExtensionResult =
  /** The hold grew; `heldUsd` is all it holds now. */
  | { extended: true; heldUsd: string }
  /** A limit has no room for the extra amount: `code` is the denial that limit gives, `dimension` its name. The hold keeps what it had. */
  | { extended: false; reason: 'refused'; code: BillingErrorCode; dimension: string }
  /**
   * Nothing that can grow now: no hold (no estimate, no limit), a hold kept in the store, one that
   * ended, a row it is held on not in the cache (`stale`), or a cache failure.
   */
  | { extended: false; reason: 'unavailable'; detail: HoldUnavailable };

/** Grows the request's hold by `amountUsd` (more than 0). Rejects only for a bad amount. */
export async function extendHold(request: BillingRequest, amountUsd: Usd): Promise<HoldExtensionResult> {
  const units = parseCostUsd(amountUsd, 'amountUsd');
  if (units === 0n) throw new MoneyError('amountUsd must be more than 0', 'amountUsd');
  return toResult(await request.extendHold(units));
}

function toResult(outcome: HoldExtension): HoldExtensionResult {
  return outcome.extended ? { extended: true, heldUsd: formatUsd(outcome.heldUnits) } : outcome;
}
