// A server that answers every request at once with a fixed 201 order body, for measuring the load
// generator alone (`generator` scenario). Run as its own process: prints its port on stdout.
import { createServer } from 'node:http';

const BODY = JSON.stringify({
  id: '0190f0a2-0000-7000-8000-000000000000',
  client_order_id: null,
  user_id: '0190f0a2-0000-7000-8000-000000000001',
  symbol: 'AAPL',
  side: 'BUY',
  type: 'MARKET',
  time_in_force: 'IOC',
  quantity: '1',
  price: null,
  stop_price: null,
  filled_quantity: '0',
  average_fill_price: null,
  status: 'PENDING',
  reject_reason: null,
  created_at: '2026-01-01T00:00:00.000Z',
  updated_at: '2026-01-01T00:00:00.000Z',
});
const HEADERS = { 'content-type': 'application/json', 'content-length': Buffer.byteLength(BODY) };

const server = createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    res.writeHead(req.method === 'POST' ? 201 : 200, HEADERS);
    res.end(BODY);
  });
});
server.keepAliveTimeout = 120_000;
server.listen(0, '127.0.0.1', () => {
  const a = server.address();
  process.stdout.write(`${typeof a === 'object' && a !== null ? a.port : 0}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
// Never outlive the bench: stdin closes when the parent goes.
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
