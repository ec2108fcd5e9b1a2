// The error catalogue of api-v1.md: each code with its HTTP status and message, in one place.
// Handlers return or throw ApiError; the error handler turns everything else into one of these
// without ever showing a stack trace or a server's own message.

export const ERRORS = {
  VALIDATION_ERROR: { status: 400, message: 'The request is not valid.' },
  UNKNOWN_SYMBOL: { status: 400, message: 'The symbol is not a listed instrument.' },
  UNAUTHORIZED: { status: 401, message: 'Missing or invalid credentials.' },
  TRADING_HALTED: {
    status: 403,
    message: 'Trading is halted for this user: new orders and amends are refused.',
  },
  NOT_FOUND: { status: 404, message: 'No such resource.' },
  CONFLICT: { status: 409, message: 'The request conflicts with an earlier one.' },
  ORDER_CLOSED: { status: 409, message: 'The order is already final.' },
  NOT_AMENDABLE: { status: 409, message: 'Only a LIMIT GTC order can be amended.' },
  PAYLOAD_TOO_LARGE: { status: 413, message: 'The request body is too large.' },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, message: 'The body must be application/json.' },
  REQUEST_TIMEOUT: { status: 408, message: 'The request did not arrive in time.' },
  HEADERS_TOO_LARGE: { status: 431, message: 'The request headers are too large.' },
  RATE_LIMITED: { status: 429, message: 'Too many requests for this key.' },
  INTERNAL: { status: 500, message: 'Internal error.' },
  OVERLOADED: { status: 503, message: 'The order queue is above its high-water mark.' },
  UNAVAILABLE: { status: 503, message: 'A required component is unavailable.' },
  OUTCOME_UNKNOWN: {
    status: 504,
    message: 'The queue did not confirm the order in time; it may have been accepted.',
  },
} as const;

export type ErrorCode = keyof typeof ERRORS;

export interface ErrorDetail {
  field: string;
  message: string;
}

/** An error answered to the client exactly as api-v1.md shapes it. */
export class ApiError extends Error {
  readonly status: number;

  constructor(
    readonly code: ErrorCode,
    message?: string,
    readonly details?: ErrorDetail[],
    /** Seconds, for 429 and 503. */
    readonly retryAfter?: number,
  ) {
    super(message ?? ERRORS[code].message);
    this.status = ERRORS[code].status;
  }

  body(): { error: { code: ErrorCode; message: string; details?: ErrorDetail[] } } {
    return {
      error: {
        code: this.code,
        message: this.message,
        ...(this.details ? { details: this.details } : {}),
      },
    };
  }
}

/** A 400 VALIDATION_ERROR naming fields. */
export function invalid(details: ErrorDetail[]): ApiError {
  const fields = details.map((d) => d.field).join(', ');
  return new ApiError('VALIDATION_ERROR', `Invalid field(s): ${fields}.`, details);
}
