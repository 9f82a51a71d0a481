// A scripted local HTTP server for the SDK's unit tests: each request is recorded and
// answered by `respond(request, index)`, which returns {status, headers?, body?} or
// 'destroy' to drop the connection without a response.
import http from 'node:http';

export async function startServer(respond) {
  const requests = [];
  const server = http.createServer(async (req, res) => {
    const chunks = [];
    for await (const chunk of req) chunks.push(chunk);
    const text = Buffer.concat(chunks).toString('utf8');
    const recorded = {
      method: req.method,
      url: req.url,
      headers: req.headers,
      text,
      body: text === '' ? undefined : JSON.parse(text),
    };
    requests.push(recorded);
    const answer = await respond(recorded, requests.length - 1);
    if (answer === 'destroy') {
      req.socket.destroy();
      return;
    }
    const body = answer.body === undefined ? '' : typeof answer.body === 'string' ? answer.body : JSON.stringify(answer.body);
    res.writeHead(answer.status ?? 200, { 'Content-Type': 'application/json', ...answer.headers });
    res.end(body);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    async close() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

export function apiError(status, type, extra = {}) {
  return {
    status,
    body: { error: { type, code: extra.code ?? null, message: extra.message ?? `${type} happened`, param: extra.param ?? null } },
    headers: extra.headers ?? {},
  };
}
