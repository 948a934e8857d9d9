// JSON API client. Any 401 (except where the caller opts out, e.g. the login
// form itself) is broadcast as a window event so the app can show the login.

export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.body = body;
  }
}

export const UNAUTHORIZED = 'pl:unauthorized';

export async function request(method, path, body, { auth = true, signal } = {}) {
  const init = { method, credentials: 'same-origin', headers: { Accept: 'application/json' }, signal };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, 'Network error — check your connection', null);
  }
  let data = null;
  const text = await res.text();
  if (text) {
    try { data = JSON.parse(text); } catch { /* not JSON: keep null */ }
  }
  if (res.status === 401 && auth) window.dispatchEvent(new CustomEvent(UNAUTHORIZED));
  if (!res.ok) {
    const msg = data && typeof data.error === 'string' && data.error ? data.error : `HTTP ${res.status}`;
    throw new ApiError(res.status, msg, data);
  }
  return data;
}

export const api = {
  get: (path, opts) => request('GET', path, undefined, opts),
  post: (path, body, opts) => request('POST', path, body, opts),
  put: (path, body, opts) => request('PUT', path, body, opts),
};
