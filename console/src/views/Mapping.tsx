// The repository -> Unix user mapping: every user's list; an admin edits one user's list at a
// time (one entry a line: "owner/repo", "owner", optionally followed by a Slurm account), and
// the API's validation error is shown under that form, nothing changed.
import { useState } from "react";
import { replaceMapping, type MappedRepository, type Mapping, type Session } from "../api";

function toText(list: MappedRepository[]): string {
  return list.map((r) => (r.account ? `${r.repository} ${r.account}` : r.repository)).join("\n");
}

function fromText(text: string): MappedRepository[] {
  return text.split("\n").map((l) => l.trim()).filter(Boolean).map((l) => {
    const [repository, account] = l.split(/\s+/, 2);
    return account ? { repository, account } : { repository };
  });
}

function Editor({ user, list, session }: { user: string; list: MappedRepository[]; session: Session }) {
  const [text, setText] = useState(toText(list));
  const [error, setError] = useState<string | null>(null);
  const [saved, setSaved] = useState(false);
  const id = `mapping-${user}`;
  const save = async (e: React.FormEvent) => {
    e.preventDefault();
    setError(null); setSaved(false);
    try { setText(toText(await replaceMapping(session, user, fromText(text)))); setSaved(true); }
    catch (err) { setError((err as Error).message); }
  };
  return (
    <form onSubmit={save} className="editor" data-user={user} aria-label={`edit ${user}'s repositories`}>
      <label htmlFor={id}>Repositories of <b>{user}</b> (one a line: owner/repo or owner, then an optional account)</label>
      <textarea id={id} rows={Math.max(3, list.length + 1)} value={text} onChange={(e) => { setText(e.target.value); setSaved(false); }}
        aria-invalid={error ? true : undefined} aria-describedby={error ? `${id}-error` : undefined} />
      <button type="submit">Save {user}</button>
      {error && <p className="error" role="alert" id={`${id}-error`} data-mapping-error>{error}</p>}
      {saved && <p className="ok" role="status">Saved.</p>}
    </form>
  );
}

export function MappingView({ mapping, session }: { mapping: Mapping[]; session: Session }) {
  const [extra, setExtra] = useState<string[]>([]);
  const [newUser, setNewUser] = useState("");
  const admin = session.role === "admin";
  const users = [...mapping.map((m) => m.user), ...extra.filter((u) => !mapping.some((m) => m.user === u))];
  return (
    <div className="mapping">
      {users.length === 0 && <p className="empty">No repository is mapped to a user.</p>}
      {users.map((user) => {
        const list = mapping.find((m) => m.user === user)?.repositories ?? [];
        return admin
          ? <Editor key={`${user}:${toText(list)}`} user={user} list={list} session={session} />
          : (<section key={user} data-user={user}><h2>{user}</h2><ul>{list.map((r) => (
              <li key={r.repository}>{r.repository}{r.account ? ` (account ${r.account})` : ""}</li>))}</ul></section>);
      })}
      {admin && (
        <form className="add-user" onSubmit={(e) => { e.preventDefault(); if (newUser.trim()) setExtra([...extra, newUser.trim()]); setNewUser(""); }}>
          <label htmlFor="new-user">Map repositories to another Unix user</label>
          <input id="new-user" value={newUser} onChange={(e) => setNewUser(e.target.value)} />
          <button type="submit">Add user</button>
        </form>
      )}
    </div>
  );
}
