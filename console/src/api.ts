// The console's view of the dispatcher: the snapshot document the event stream sends, the
// session, and the few requests that change something (each with the session's CSRF token).

export interface WaitingJob { job_id: number; repo: string; reason: string }
export interface Pool {
  name: string; labels: string[]; max_runners: number;
  pending: number; starting: number; idle: number; busy: number;
  waiting: WaitingJob[];
}
export interface Runner {
  name: string; pool: string; slurm_job_id: number | null; node: string | null;
  user: string | null; state: string; since: number; job_id: number | null; job_url: string | null;
}
export interface Job {
  job_id: number; repo: string; status: string; runner: string | null;
  queued_ms: number | null; submitted_ms: number | null; started_ms: number | null;
  finished_ms: number | null; url: string;
}
export interface MappedRepository { repository: string; account?: string }
export interface Mapping { user: string; repositories: MappedRepository[] }
export interface Snapshot {
  role: "admin" | "viewer"; user: string | null;
  pools: Pool[]; runners: Runner[]; jobs: Job[]; mapping: Mapping[]; problems: string[];
}
export interface Session { role: "admin" | "viewer"; user: string | null; csrf_token: string; expires_at: number }

/** An answer that was not 2xx, with the API's own message. */
export class ApiError extends Error {
  constructor(public status: number, message: string) { super(message); }
}

async function answer<T>(response: Response): Promise<T> {
  const text = await response.text();
  let body: unknown = null;
  try { body = text ? JSON.parse(text) : null; } catch { body = null; }
  if (!response.ok) {
    const message = (body as { error?: string } | null)?.error ?? `${response.status} ${response.statusText}`;
    throw new ApiError(response.status, message);
  }
  return body as T;
}

const base = "/console/api";

export async function currentSession(): Promise<Session | null> {
  const response = await fetch(`${base}/session`, { credentials: "same-origin" });
  if (response.status === 401) return null;
  return answer<Session>(response);
}

export async function login(token: string): Promise<Session> {
  return answer<Session>(await fetch(`${base}/login`, {
    method: "POST", credentials: "same-origin",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ token }),
  }));
}

export async function logout(session: Session): Promise<void> {
  await answer<null>(await fetch(`${base}/logout`, {
    method: "POST", credentials: "same-origin", headers: { "x-csrf-token": session.csrf_token },
  }));
}

export async function replaceMapping(session: Session, user: string, list: MappedRepository[]): Promise<MappedRepository[]> {
  return answer<MappedRepository[]>(await fetch(`${base}/repositories/${encodeURIComponent(user)}`, {
    method: "POST", credentials: "same-origin",
    headers: { "content-type": "application/json", "x-csrf-token": session.csrf_token },
    body: JSON.stringify(list),
  }));
}

/** The live stream: calls `onSnapshot` with each new document, `onExpired` when the session ends. */
export function subscribe(onSnapshot: (s: Snapshot) => void, onExpired: () => void, onDown: (down: boolean) => void): () => void {
  const source = new EventSource(`${base}/events`, { withCredentials: true });
  source.addEventListener("snapshot", (e) => { onDown(false); onSnapshot(JSON.parse((e as MessageEvent).data)); });
  source.addEventListener("expired", () => { source.close(); onExpired(); });
  source.onerror = () => onDown(true);
  return () => source.close();
}
