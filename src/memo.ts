/** `make(k)` once per object `k`: later calls with the same object give the same value (held weakly). */
export function perObject<K extends object, V>(make: (k: K) => V): (k: K) => V {
  const made = new WeakMap<K, V>();
  return (k) => {
    let v = made.get(k);
    if (v === undefined) {
      v = make(k);
      made.set(k, v);
    }
    return v;
  };
}
