// The gateway's Fastify application: external plugins, then the body parser, validation and the
// error handler that keep every answer in api-v1.md's shape, then the routes. `server.ts`-style
// listening is the composition root's job; tests drive this with `app.inject()`.
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Ajv } from 'ajv';
import type { ErrorObject } from 'ajv';
import addFormatsModule from 'ajv-formats';
import Fastify, { LogController } from 'fastify';
import secureJson from 'secure-json-parse';
import type {
  FastifyError,
  FastifyInstance,
  FastifyReply,
  FastifyRequest,
  RawServerDefault,
} from 'fastify';
import { STATUS_CODES } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Redis } from 'ioredis';
import { isConnectionFailure } from '../db/pg-errors.js';
import { componentErrors } from '../metrics/pipeline.js';
import type { Logger } from 'pino';
import type { Config } from '../config/config.js';
import { AppliedWatcher } from '../queue/applied-watcher.js';
import { OrderFeed } from '../queue/order-feed.js';
import type { OrderQueue } from '../queue/order-queue.js';
import { KeyCache } from './auth.js';
import { ApiError, invalid } from './errors.js';
import type { ErrorCode, ErrorDetail } from './errors.js';
import { InstrumentCache } from './instrument-cache.js';
import { GatewayMetrics } from './metrics.js';
import { RateLimiter } from './rate-limit.js';
import { adminRoutes } from './routes/admin.js';
import { cancelAfterRoutes } from './routes/cancel-after.js';
import { eventRoutes } from './routes/events.js';
import { marketRoutes, readBook } from './routes/market.js';
import { operationsRoutes } from './routes/operations.js';
import { orderRoutes } from './routes/orders.js';
import { BookFeed } from './book-feed.js';
import { ErrorBody } from './schemas.js';
import type { EngineView, GatewayStore } from './store.js';

export interface GatewayDeps {
  config: Pick<
    Config,
    | 'orderPath'
    | 'bodyLimit'
    | 'rateLimit'
    | 'adminToken'
    | 'logLevel'
    | 'readyMaxLag'
    | 'host'
    | 'port'
    | 'streamsPerUser'
    | 'marketStreams'
    | 'marketStreamsPerAddress'
  >;
  queue: OrderQueue;
  /** The connection `queue` uses; sync mode subscribes through a duplicate of it. */
  redis: Redis;
  store: GatewayStore;
  engine: EngineView;
  logger: Logger;
  /** Redis liveness for /health. */
  pingRedis(): Promise<void>;
}

/** What every route can reach. */
export interface GatewayContext extends GatewayDeps {
  keys: KeyCache;
  instruments: InstrumentCache;
  limiter: RateLimiter;
  metrics: GatewayMetrics;
  /** Sync mode's wait for the engine's answer. */
  applied: AppliedWatcher;
  /** The users' live order updates (GET /v1/events), and the public trades. */
  feed: OrderFeed;
  /** The books market-data streams follow (GET /v1/market/events). */
  books: BookFeed;
}

declare module 'fastify' {
  interface FastifyRequest {
    /** Text of the money fields' JSON numbers, as the client wrote them. */
    rawNumbers: Record<string, string>;
  }
  interface FastifyContextConfig {
    /**
     * For a body the schema refused: what the route's own checks find wrong in it besides the
     * fields in `named`, so that the answer names every bad field.
     */
    moreDetails?: (req: FastifyRequest, named: ReadonlySet<string>) => Promise<ErrorDetail[]>;
  }
}

// CommonJS default export seen from ESM.
const addFormats = addFormatsModule as unknown as (ajv: Ajv) => Ajv;

/** A money field's JSON number, captured before JSON.parse turns it into a binary float. */
const MONEY_NUMBER =
  /"(quantity|price|stop_price|tick_size|lot_size)"\s*:\s*(-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)/g;

function fieldOf(e: ErrorObject): string {
  const path = e.instancePath.replace(/^\//, '').replace(/\//g, '.');
  const params = e.params as { missingProperty?: string; additionalProperty?: string };
  const extra = params.missingProperty ?? params.additionalProperty;
  return [path, extra].filter((p) => p !== undefined && p !== '').join('.') || '(body)';
}

function detailsOf(errors: ErrorObject[], part: string): ErrorDetail[] {
  const seen = new Map<string, ErrorDetail>();
  for (const e of errors) {
    const field = fieldOf(e);
    if (seen.has(field)) continue;
    const params = e.params as { additionalProperty?: string; allowedValues?: unknown[] };
    let message = e.message ?? 'is invalid';
    if (params.additionalProperty !== undefined) message = 'is not a known field';
    else if (e.keyword === 'required') message = 'is required';
    else if (e.keyword === 'anyOf' || e.keyword === 'const')
      message = 'has a value not allowed here';
    seen.set(field, { field: part === 'body' ? field : `${part}.${field}`, message });
  }
  return [...seen.values()];
}

/** Gateways being drained (see closeGateway). */
const draining = new WeakSet<object>();

/** How long a stopping gateway keeps serving with `Connection: close` before it closes. */
const DRAIN_MS = 250;

/**
 * Stops a listening gateway without leaving a client's request unanswered. Closing a keep-alive
 * connection that looks idle races a client that is sending on it just then: its request is
 * lost unread, and the client cannot know whether it was taken. So first, for up to DRAIN_MS,
 * every answer carries `Connection: close` and each client connection ends after its next
 * answer; only then does the server stop (answering what is in flight, closing what is left).
 */
export async function closeGateway(app: {
  server: { getConnections(cb: (err: Error | null, n: number) => void): void };
  close(): PromiseLike<unknown>;
}): Promise<void> {
  draining.add(app);
  const until = Date.now() + DRAIN_MS;
  const open = (): Promise<number> =>
    new Promise((resolve) => app.server.getConnections((err, n) => resolve(err ? 0 : n)));
  while (Date.now() < until && (await open()) > 0) {
    await new Promise((r) => setTimeout(r, 10));
  }
  await app.close();
}

/** A URL the router cannot take: not valid percent-encoding, or a path segment over its limit. */
function refuseUrl(err: FastifyError, _req: FastifyRequest, reply: FastifyReply): void {
  const message =
    err.code === 'FST_ERR_MAX_PARAM_LENGTH'
      ? 'has a path segment longer than 100 characters'
      : 'is not a valid URL';
  void reply.code(400).send(invalid([{ field: '(url)', message }]).body());
}

/** Node's HTTP parser errors that have a code of their own; any other is a 400. */
const PARSER_ERRORS: Record<string, ErrorCode | undefined> = {
  HPE_HEADER_OVERFLOW: 'HEADERS_TOO_LARGE',
  ERR_HTTP_REQUEST_TIMEOUT: 'REQUEST_TIMEOUT',
};

/**
 * What Node's HTTP parser refuses before Fastify sees a request (headers over the limit, a request
 * line that is not HTTP), answered in api-v1.md's error shape; Node's own answer has no body and
 * Fastify's default another shape. The connection is then closed, as Node does.
 */
function refuseMalformed(err: Error & { code?: string }, socket: Duplex): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  // As Node's own handler: no answer over one already being written on this connection.
  const inFlight = (socket as Duplex & { _httpMessage?: { headersSent?: boolean } })._httpMessage;
  if (socket.writable && inFlight?.headersSent !== true) {
    const code = PARSER_ERRORS[err.code ?? ''];
    const e = code
      ? new ApiError(code)
      : new ApiError('VALIDATION_ERROR', 'The request is not valid HTTP.');
    const body = JSON.stringify(e.body());
    socket.write(
      `HTTP/1.1 ${e.status} ${STATUS_CODES[e.status] ?? ''}\r\nContent-Type: application/json\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  }
  socket.destroy(err);
}

/** Builds the app; call `ready()` (or inject) before use. */
export async function buildGateway(
  deps: GatewayDeps,
): Promise<
  FastifyInstance<RawServerDefault, IncomingMessage, ServerResponse, Logger, TypeBoxTypeProvider>
> {
  // The level is fixed at start: decided once, not per request.
  const requestLoggers = deps.logger.isLevelEnabled('debug');
  const app = Fastify({
    loggerInstance: deps.logger,
    bodyLimit: deps.config.bodyLimit,
    // One line per request comes from the onResponse hook below, at debug.
    logController: new LogController({ disableRequestLogging: true }),
    // A child logger per request costs an object and a serialised binding on the hot path; below
    // debug, request lines are not written, and faults are logged with the URL instead.
    childLoggerFactory: (logger, bindings, opts) =>
      requestLoggers ? logger.child(bindings, opts) : logger,
    // A request that reaches a closing gateway (pipelined, or on a connection not yet closed) is
    // refused by the onRequest hook below, in api-v1.md's shape; Fastify's own 503 has another.
    return503OnClosing: false,
    // Malformed URLs and requests the HTTP parser refuses are answered in api-v1.md's error
    // shape too (Fastify's own answers have another).
    frameworkErrors: refuseUrl,
    clientErrorHandler: refuseMalformed,
  }).withTypeProvider<TypeBoxTypeProvider>();

  const ctx: GatewayContext = {
    ...deps,
    keys: new KeyCache(() => deps.store.loadUsers()),
    instruments: new InstrumentCache(
      () => deps.store.listInstruments(),
      (err) =>
        deps.logger.warn({ err }, 'instruments could not be read again; the last read serves'),
    ),
    limiter: new RateLimiter(deps.config.rateLimit),
    metrics: new GatewayMetrics(),
    applied: new AppliedWatcher(deps.redis, deps.queue.shards),
    feed: new OrderFeed({
      redis: deps.redis,
      shards: deps.queue.shards,
      logger: deps.logger,
      onBatch: (batch) => ctx.books.touched(batch),
    }),
    books: new BookFeed(async (symbol, depth) => {
      const book = await readBook(ctx, symbol, depth);
      if (book === undefined) throw new Error(`${symbol} is no longer listed`);
      return book;
    }, deps.logger),
  };
  // Open connections, for the preClose hook to find those that have sent nothing.
  const sockets = new Set<Socket>();
  app.server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  const unwatch = ctx.metrics.watch(deps.redis, deps.queue.shards);
  app.addHook('onClose', (_app, done) => {
    unwatch();
    done();
  });
  if (deps.config.orderPath === 'sync') {
    await ctx.applied.start();
    app.addHook('onClose', (_app, done) => {
      ctx.applied.stop();
      done();
    });
  }
  await ctx.keys.reload();
  await ctx.instruments.reload();
  ctx.instruments.start();
  app.addHook('onClose', (_app, done) => {
    ctx.instruments.stop();
    done();
  });

  // Bodies are validated strictly (no type coercion: "true" is not a boolean); query strings
  // arrive as text and are coerced.
  const strict = addFormats(new Ajv({ allErrors: true, coerceTypes: false, strict: false }));
  const coercing = addFormats(
    new Ajv({ allErrors: true, coerceTypes: 'array', useDefaults: true, strict: false }),
  );
  app.setValidatorCompiler(({ schema, httpPart }) =>
    (httpPart === 'body' ? strict : coercing).compile(schema),
  );

  app.removeAllContentTypeParsers();
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (req, body, done) => {
    const text = body as string;
    // An empty body is no body on a route that takes none: a cancel sent chunked with nothing in
    // it, or with a length of "00" (`withoutBody` drops the type of a plain empty one first).
    if (text.length === 0 && req.routeOptions.schema?.body === undefined) {
      done(null, undefined);
      return;
    }
    // Only a body that has a money field written as a JSON number needs the scan.
    const raw: Record<string, string> = {};
    if (/"\s*:\s*-?[0-9]/.test(text)) {
      for (const m of text.matchAll(MONEY_NUMBER)) raw[m[1] as string] = m[2] as string;
    }
    (req as FastifyRequest).rawNumbers = raw;
    let parsed: unknown;
    try {
      // secure-json-parse: JSON.parse, refusing __proto__ and constructor.prototype keys (only
      // scanned for when the text contains them): no body reaches an object's prototype, and
      // none is quietly changed into another order either.
      parsed = secureJson.parse(text, null, { protoAction: 'error', constructorAction: 'error' });
    } catch (err) {
      const forbidden =
        err instanceof SyntaxError &&
        err.message === 'Object contains forbidden prototype property';
      done(
        forbidden
          ? new ApiError('VALIDATION_ERROR', 'The body has a forbidden key.', [
              { field: '(body)', message: 'has a __proto__ or constructor.prototype key' },
            ])
          : new ApiError('VALIDATION_ERROR', 'The body is not valid JSON.', [
              { field: '(body)', message: 'malformed JSON' },
            ]),
      );
      return;
    }
    done(null, parsed);
  });
  // Any other type, or a body sent with none: an empty body on a route that takes no body is no
  // body (a cancel sent chunked with nothing in it and, say, `text/plain`); anything else is 415.
  app.addContentTypeParser('*', { parseAs: 'string' }, (req, body, done) => {
    if ((body as string).length === 0 && req.routeOptions.schema?.body === undefined) {
      done(null, undefined);
    } else done(new ApiError('UNSUPPORTED_MEDIA_TYPE'));
  });
  app.decorateRequest('rawNumbers', null as unknown as Record<string, string>);
  let closing = false;
  app.addHook('preClose', (done) => {
    closing = true;
    // Event streams never end by themselves: ended here, the server's close need not wait.
    ctx.feed.stop();
    ctx.books.stop();
    // A connection that has sent nothing (a client's spare, a browser's preconnect) is not idle
    // to Node's server, which would wait its headers timeout (60 s) or the client: it goes now.
    // One with a request begun is left to finish it, and is answered 503 (below).
    for (const socket of sockets) if (socket.bytesRead === 0) socket.destroy();
    done();
  });
  app.addHook('onRequest', (req, _reply, done) => {
    req.rawNumbers = {};
    if (closing) done(new ApiError('UNAVAILABLE', 'The gateway is stopping; retry.', undefined, 1));
    else done();
  });
  // Draining: every answer, including those to requests taken before, closes its connection.
  app.addHook('onSend', (_req, reply, payload, done) => {
    if (draining.has(app)) void reply.header('connection', 'close');
    done(null, payload);
  });
  app.addHook('onResponse', (req, reply, done) => {
    const route = req.routeOptions.url ?? 'unmatched';
    ctx.metrics.observeRequest(req.method, route, reply.statusCode, reply.elapsedTime / 1000);
    req.log.debug(
      { method: req.method, url: req.url, status: reply.statusCode, ms: reply.elapsedTime },
      'request',
    );
    done();
  });

  app.setErrorHandler(async (err: FastifyError | ApiError, req, reply) => {
    let e: ApiError;
    if (err instanceof ApiError) e = err;
    else if (err.validation) {
      const details = detailsOf(err.validation as ErrorObject[], err.validationContext ?? 'body');
      const more =
        err.validationContext === 'body' ? req.routeOptions.config.moreDetails : undefined;
      if (more !== undefined) {
        try {
          details.push(...(await more(req, new Set(details.map((d) => d.field)))));
        } catch (failure) {
          // The schema's findings stand alone; the instrument could not be looked up.
          req.log.warn({ err: failure, url: req.url }, 'could not check the refused body further');
        }
      }
      e = invalid(details);
    } else if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') e = new ApiError('PAYLOAD_TOO_LARGE');
    else if (err.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE')
      e = new ApiError('UNSUPPORTED_MEDIA_TYPE');
    else if (err.code === 'FST_ERR_CTP_EMPTY_JSON_BODY') {
      e = invalid([{ field: '(body)', message: 'is empty' }]);
    } else if (err.statusCode !== undefined && err.statusCode >= 400 && err.statusCode < 500) {
      e = new ApiError('VALIDATION_ERROR', 'The request is not valid.');
    } else if (isConnectionError(err)) {
      componentErrors.inc({ dependency: dependencyOf(err), component: 'gateway' });
      req.log.warn({ err, url: req.url }, 'a required component is unreachable');
      e = new ApiError('UNAVAILABLE', undefined, undefined, 1);
    } else {
      req.log.error({ err, url: req.url }, 'unhandled error');
      e = new ApiError('INTERNAL');
    }
    if (e.retryAfter !== undefined) void reply.header('Retry-After', String(e.retryAfter));
    if (e.status >= 400 && e.status < 500) ctx.metrics.clientErrors.inc({ code: e.code });
    return reply.code(e.status).send(e.body());
  });
  app.setNotFoundHandler((_req, reply) => reply.code(404).send(new ApiError('NOT_FOUND').body()));

  app.addSchema(ErrorBody);
  await app.register(swagger, {
    openapi: {
      info: {
        title: 'matchbox',
        version: '1',
        description:
          'Order submission and matching. Every error has the shape of #/components/schemas/Error.',
      },
      components: {
        securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
      },
      security: [{ bearer: [] }],
    },
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });

  await app.register(orderRoutes(ctx));
  await app.register(cancelAfterRoutes(ctx));
  await app.register(eventRoutes(ctx));
  await app.register(adminRoutes(ctx));
  await app.register(marketRoutes(ctx));
  await app.register(operationsRoutes(ctx));
  return app;
}

/**
 * Which dependency a connection error came from. The gateway reaches PostgreSQL only through its
 * store, which marks every failure of its own (src/system/pg-gateway-store.ts).
 */
function dependencyOf(err: Error): string {
  const tagged = (err as { dependency?: string }).dependency;
  if (tagged !== undefined) return tagged;
  if (err.name === 'EngineUnavailableError' || /engine/i.test(err.message)) return 'engine';
  return 'redis';
}

const REDIS_NOT_NOW = /^(OOM|LOADING|MISCONF|READONLY|BUSY|MASTERDOWN|NOREPLICAS|TRYAGAIN)\b/;

/** Errors that mean Redis, PostgreSQL or the engine could not be reached in time. */
function isConnectionError(err: Error): boolean {
  // PostgreSQL's errors come marked from the store; which of them mean "not now" (refused, too
  // many clients, the database not taking connections, shutting down…) is the one list of
  // pg-errors.ts that the store's breaker and the writer use too.
  if ((err as { dependency?: string }).dependency === 'postgres' && isConnectionFailure(err)) {
    return true;
  }
  // Redis answering "not now": out of memory (`maxmemory`), still loading its AOF, refusing
  // writes after a failed save, a replica, or busy with a long script. Nothing was written.
  if (err.name === 'ReplyError' && REDIS_NOT_NOW.test(err.message)) return true;
  if (err.name === 'RequeuePendingError') return true;
  const code = (err as { code?: string }).code ?? '';
  return (
    /ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|CONNECT_TIMEOUT|CONNECTION_/.test(code) ||
    /Connection is closed|Stream isn't writeable|max retries|Command timed out|UNAVAILABLE|DEADLINE/i.test(
      err.message,
    )
  );
}
