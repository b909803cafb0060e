// The shell: the login form until there is a session, then a tab bar (keyboard: Tab to it,
// arrow keys between tabs, Enter opens) over the five views, all fed by one event stream.
import { useCallback, useEffect, useState, type KeyboardEvent } from "react";
import { currentSession, login, logout, subscribe, type Session, type Snapshot } from "./api";
import { Pools } from "./views/Pools";
import { Runners } from "./views/Runners";
import { Jobs } from "./views/Jobs";
import { Timeline } from "./views/Timeline";
import { MappingView } from "./views/Mapping";

const TABS = ["pools", "runners", "jobs", "timeline", "mapping"] as const;
type Tab = (typeof TABS)[number];

function tabFromHash(): Tab {
  const name = window.location.hash.replace("#", "");
  return (TABS as readonly string[]).includes(name) ? (name as Tab) : "pools";
}

function Login({ onSession }: { onSession: (s: Session) => void }) {
  const [token, setToken] = useState("");
  const [error, setError] = useState<string | null>(null);
  const submit = async (e: React.FormEvent) => {
    e.preventDefault();
    setError(null);
    try { onSession(await login(token)); setToken(""); }
    catch (err) { setError((err as Error).message); }
  };
  return (
    <form className="login" onSubmit={submit} aria-label="Log in">
      <h1>gha-dispatcher console</h1>
      <label htmlFor="token">Admin token</label>
      <input id="token" type="password" autoComplete="off" value={token} autoFocus
        onChange={(e) => setToken(e.target.value)} />
      <button type="submit">Log in</button>
      {error && <p className="error" role="alert" id="login-error">{error}</p>}
      <p className="hint">Cluster users: run <code>gha-dispatcher console-link</code> on a login node for a read-only link.</p>
    </form>
  );
}

export function App() {
  const [session, setSession] = useState<Session | null | undefined>(undefined);
  const [snapshot, setSnapshot] = useState<Snapshot | null>(null);
  const [tab, setTab] = useState<Tab>(tabFromHash());
  const [down, setDown] = useState(false);
  const [notice, setNotice] = useState<string | null>(null);

  useEffect(() => {
    currentSession().then(setSession, (e) => { setNotice(String(e)); setSession(null); });
    const onHash = () => setTab(tabFromHash());
    window.addEventListener("hashchange", onHash);
    return () => window.removeEventListener("hashchange", onHash);
  }, []);

  useEffect(() => {
    if (!session) return;
    return subscribe(setSnapshot, () => {
      setSession(null); setSnapshot(null); setNotice("Your session expired; log in again.");
    }, setDown);
  }, [session]);

  const open = useCallback((t: Tab) => { window.location.hash = t; setTab(t); }, []);
  const onTabKey = (e: KeyboardEvent<HTMLButtonElement>) => {
    const step = e.key === "ArrowRight" ? 1 : e.key === "ArrowLeft" ? -1 : 0;
    if (!step) return;
    const next = TABS[(TABS.indexOf(tab) + step + TABS.length) % TABS.length];
    open(next);
    document.getElementById(`tab-${next}`)?.focus();
  };

  if (session === undefined) return <p className="empty">Loading…</p>;
  if (session === null) {
    return <>{notice && <p className="notice" role="status">{notice}</p>}<Login onSession={(s) => { setNotice(null); setSession(s); }} /></>;
  }
  const who = session.role === "admin" ? "admin" : `${session.user} (read-only)`;
  return (
    <div className="app">
      <header>
        <h1>gha-dispatcher</h1>
        <nav role="tablist" aria-label="Views">
          {TABS.map((t) => (
            <button key={t} id={`tab-${t}`} role="tab" aria-selected={tab === t} aria-controls="view"
              tabIndex={tab === t ? 0 : -1} onClick={() => open(t)} onKeyDown={onTabKey}>{t}</button>
          ))}
        </nav>
        <span className="who">{who}</span>
        <button className="logout" onClick={() => logout(session).finally(() => { setSession(null); setSnapshot(null); })}>Log out</button>
      </header>
      {down && <p className="notice" role="status">Live updates interrupted; reconnecting…</p>}
      {snapshot?.problems.map((p) => <p key={p} className="error" role="alert">{p}</p>)}
      <main id="view" role="tabpanel" aria-labelledby={`tab-${tab}`} tabIndex={0}>
        {!snapshot ? <p className="empty">Waiting for the first update…</p> :
          tab === "pools" ? <Pools pools={snapshot.pools} /> :
          tab === "runners" ? <Runners runners={snapshot.runners} /> :
          tab === "jobs" ? <Jobs jobs={snapshot.jobs} /> :
          tab === "timeline" ? <Timeline jobs={snapshot.jobs} /> :
          <MappingView mapping={snapshot.mapping} session={session} />}
      </main>
    </div>
  );
}
