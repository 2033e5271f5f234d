// Errors the store raises on its own account; each is permanent, so the settlement retry loop stops on it.

export type BillingStoreErrorCode = 'SETTLEMENT_CONFLICT' | 'SETTLEMENT_TARGET_MISSING' | 'STORE_DATA_INVALID';

/** Base class. `permanent` tells a retry loop that running the same call again cannot succeed. */
export class BillingStoreError extends Error {
  override readonly name: string = 'BillingStoreError';
  readonly permanent = true;
  constructor(
    readonly code: BillingStoreErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** The same (requestId, apiKeyId) was already settled with different content (docs/behaviour.md#settlement). */
export class SettlementConflictError extends BillingStoreError {
  override readonly name = 'SettlementConflictError';
  constructor(
    readonly requestId: string,
    readonly apiKeyId: string,
  ) {
    super(
      'SETTLEMENT_CONFLICT',
      `requestId ${JSON.stringify(requestId)}${apiKeyId ? ` (apiKeyId ${JSON.stringify(apiKeyId)})` : ''} was already settled with different content`,
    );
  }
}

/** A balance-mode settlement for a user without an account, or a subscription-mode one without a subscription row. */
export class SettlementTargetMissingError extends BillingStoreError {
  override readonly name = 'SettlementTargetMissingError';
  constructor(
    readonly target: 'account' | 'subscription',
    readonly userId: string,
    readonly groupId: string | null,
  ) {
    super(
      'SETTLEMENT_TARGET_MISSING',
      target === 'account'
        ? `cannot settle in balance mode: user ${JSON.stringify(userId)} has no billing account`
        : `cannot settle in subscription mode: user ${JSON.stringify(userId)} has no subscription for group ${JSON.stringify(groupId)}`,
    );
  }
}

/** A value read from the database is not what the schema promises (corrupt row, foreign writer, overflow). */
export class StoreDataError extends BillingStoreError {
  override readonly name = 'StoreDataError';
  constructor(
    readonly column: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super('STORE_DATA_INVALID', `${column}: ${message}`, options);
  }
}

/**
 * Whether the database refused the data rather than failed: a constraint or a value out of range
 * (PostgreSQL classes 22 and 23, SQLite constraint errors), or a row it holds that the store cannot
 * read. Such an error belongs to one settlement of a batch, so the batch is split to find it.
 */
export function violatesData(err: unknown): boolean {
  if (err instanceof StoreDataError) return true;
  const code = typeof err === 'object' && err !== null ? (err as { code?: unknown }).code : undefined;
  return (
    typeof code === 'string' &&
    (code.startsWith('22') || code.startsWith('23') || code.startsWith('SQLITE_CONSTRAINT') || code === 'SQLITE_MISMATCH' || code === 'SQLITE_TOOBIG')
  );
}
