/** The metrics endpoint from a test: HTTP requests, a scrape parsed, the port a daemon logged. */
import http from 'node:http';

export interface Answer {
  status: number;
  body: string;
  ms: number;
}

/** An HTTP request to the metrics endpoint: a TCP port on 127.0.0.1, or a Unix socket path. */
export function get(at: number | string, path: string, method = 'GET'): Promise<Answer> {
  const t0 = performance.now();
  const where = typeof at === 'number' ? { host: '127.0.0.1', port: at } : { socketPath: at };
  return new Promise((resolve, reject) => {
    const req = http.request({ ...where, path, method }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, ms: performance.now() - t0 }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** `name{labels} value` lines → a map from `name{labels}` (labels as printed) to the value. */
export function parseScrape(text: string): Map<string, number> {
  const m = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const sp = line.lastIndexOf(' ');
    m.set(line.slice(0, sp), Number(line.slice(sp + 1)));
  }
  return m;
}

/** The port the daemon logged for --metrics-address=127.0.0.1:0. */
export async function metricsPort(waitForLog: (re: RegExp) => Promise<string>): Promise<number> {
  const line = await waitForLog(/metrics: http:\/\/127\.0\.0\.1:(\d+)\/metrics/);
  return Number(/127\.0\.0\.1:(\d+)/.exec(line)![1]);
}
