/** What a view is to the router: an element, a title, and a way to stop its streams and timers. */
export interface View {
  /** The document title's first part, e.g. "Job 42". */
  title: string;
  el: HTMLElement;
  dispose?(): void;
}

/** The parts of a hash route: #/jobs/42?state=RUNNING -> path ["jobs", "42"], query state=RUNNING. */
export interface Route {
  path: string[];
  query: URLSearchParams;
}

/** Builds a hash link from a path and query values (empty values left out). */
export function href(path: string, query: Record<string, string | undefined> = {}): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v) q.set(k, v);
  const s = q.toString();
  return `#/${path}${s ? `?${s}` : ""}`;
}
