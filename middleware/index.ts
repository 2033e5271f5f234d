// Public Koa surface: `koa-billing-eligibility/middleware`.
export { billingEligibility, type BillingEligibilityOptions } from './billing-eligibility.js';
export { billingContext, type BillingContextOptions, type BillingState, type SubjectResolver, type CostEstimator } from './billing-context.js';
export {
  breakerGuard,
  balanceCheck,
  subscriptionCheck,
  platformQuota,
  apiKeyWindows,
  reserveEstimate,
  concurrencyLimit,
  rpmLimit,
  type CheckMiddlewareOptions,
} from './checks.js';
export { renderDenial, type DenialFormat, type RenderFunction } from './render.js';
