// Owns the RFC 6962 Merkle tree: leaf and node hashes, tree heads, inclusion and consistency proofs.
import { createHash } from 'node:crypto';

export const HASH_SIZE = 32;

const sha256 = (...parts: Uint8Array[]): Buffer => {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
};

const LEAF_PREFIX = Uint8Array.of(0x00);
const NODE_PREFIX = Uint8Array.of(0x01);

/** MTH({}) = SHA-256() (RFC 6962 §2.1). */
export const EMPTY_ROOT: Buffer = sha256();

/** MTH({d}) = SHA-256(0x00 || d) (RFC 6962 §2.1): the prefix keeps a leaf from passing for a node. */
export const leafHash = (data: Uint8Array): Buffer => sha256(LEAF_PREFIX, data);

/** SHA-256(0x01 || left || right) (RFC 6962 §2.1). */
export const nodeHash = (left: Uint8Array, right: Uint8Array): Buffer => sha256(NODE_PREFIX, left, right);

/** The largest power of two smaller than n (n > 1): where RFC 6962 §2.1 splits a tree. */
function splitPoint(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

/**
 * Tree heads at each of the given sizes, in one pass over the leaf hashes. The stack holds the roots
 * of the complete subtrees so far (the "compact range"), largest first; folding it from the right is
 * exactly the left-balanced split of RFC 6962 §2.1.
 */
export function rootsAt(leaves: readonly Uint8Array[], sizes: readonly number[]): Buffer[] {
  const wanted = new Map<number, Buffer>();
  const pending = new Set(sizes);
  const fold = (stack: readonly Buffer[]): Buffer => {
    if (stack.length === 0) return EMPTY_ROOT;
    let root = stack[stack.length - 1] as Buffer;
    for (let i = stack.length - 2; i >= 0; i--) root = nodeHash(stack[i] as Buffer, root);
    return root;
  };
  const stack: Buffer[] = [];
  if (pending.has(0)) wanted.set(0, EMPTY_ROOT);
  for (let i = 0; i < leaves.length; i++) {
    stack.push(Buffer.from(leaves[i] as Uint8Array));
    for (let done = i + 1; done % 2 === 0; done /= 2) {
      const right = stack.pop() as Buffer;
      const left = stack.pop() as Buffer;
      stack.push(nodeHash(left, right));
    }
    if (pending.has(i + 1)) wanted.set(i + 1, fold(stack));
  }
  return sizes.map((size) => {
    const root = wanted.get(size);
    if (!root) throw new RangeError(`tree size ${size} is outside 0..${leaves.length}`);
    return root;
  });
}

/**
 * A tree over a fixed list of leaf hashes, for proofs at any size up to it. Roots of complete subtrees
 * never change as the log grows, so they are kept: a batch of proofs over one tree costs O(n) hashing
 * once plus O(log n) per proof.
 */
export class MerkleTree {
  readonly #leaves: readonly Uint8Array[];
  readonly #complete = new Map<string, Buffer>();

  constructor(leaves: readonly Uint8Array[]) {
    this.#leaves = leaves;
  }

  get size(): number {
    return this.#leaves.length;
  }

  /** MTH(D[size]) (RFC 6962 §2.1). */
  root(size: number = this.size): Buffer {
    this.#checkSize(size);
    return size === 0 ? EMPTY_ROOT : this.#hash(0, size);
  }

  /** PATH(index, D[size]) of RFC 6962 §2.1.1. */
  inclusionProof(index: number, size: number = this.size): Buffer[] {
    this.#checkSize(size);
    if (!Number.isSafeInteger(index) || index < 0 || index >= size) {
      throw new RangeError(`leaf ${index} is outside a tree of ${size}`);
    }
    const path = (m: number, start: number, end: number): Buffer[] => {
      if (end - start <= 1) return [];
      const k = splitPoint(end - start);
      return m < k
        ? [...path(m, start, start + k), this.#hash(start + k, end)]
        : [...path(m - k, start + k, end), this.#hash(start, start + k)];
    };
    return path(index, 0, size);
  }

  /** PROOF(m, D[size]) of RFC 6962 §2.1.2; empty when m is 0 or size. */
  consistencyProof(m: number, size: number = this.size): Buffer[] {
    this.#checkSize(size);
    if (!Number.isSafeInteger(m) || m < 0 || m > size) throw new RangeError(`size ${m} is above ${size}`);
    const sub = (m: number, start: number, end: number, complete: boolean): Buffer[] => {
      if (m === end - start) return complete ? [] : [this.#hash(start, end)];
      const k = splitPoint(end - start);
      return m <= k
        ? [...sub(m, start, start + k, complete), this.#hash(start + k, end)]
        : [...sub(m - k, start + k, end, false), this.#hash(start, start + k)];
    };
    return m === 0 || m === size ? [] : sub(m, 0, size, true);
  }

  #checkSize(size: number): void {
    if (!Number.isSafeInteger(size) || size < 0 || size > this.size) {
      throw new RangeError(`tree size ${size} is outside 0..${this.size}`);
    }
  }

  /** MTH of leaves [start, end), end > start. */
  #hash(start: number, end: number): Buffer {
    const n = end - start;
    if (n === 1) return Buffer.from(this.#leaves[start] as Uint8Array);
    const k = splitPoint(n);
    // A power-of-two range starting at a multiple of its size is a complete subtree: final once built.
    const complete = k * 2 === n;
    const key = `${start}/${end}`;
    const known = complete ? this.#complete.get(key) : undefined;
    if (known) return known;
    const h = nodeHash(this.#hash(start, start + k), this.#hash(start + k, end));
    if (complete) this.#complete.set(key, h);
    return h;
  }
}

/** MTH(D[n]) over leaf hashes. */
export const rootOf = (leaves: readonly Uint8Array[]): Buffer =>
  rootsAt(leaves, [leaves.length])[0] as Buffer;

/** PATH(m, D[n]) of RFC 6962 §2.1.1, where n = leaves.length. */
export const inclusionProof = (leaves: readonly Uint8Array[], index: number): Buffer[] =>
  new MerkleTree(leaves).inclusionProof(index);

/** PROOF(m, D[n]) of RFC 6962 §2.1.2, where n = leaves.length; empty when m is 0 or n. */
export const consistencyProof = (leaves: readonly Uint8Array[], m: number): Buffer[] =>
  new MerkleTree(leaves).consistencyProof(m);

const isHash = (h: unknown): h is Uint8Array => h instanceof Uint8Array && h.length === HASH_SIZE;
const sameHash = (a: Uint8Array, b: Uint8Array): boolean => Buffer.from(a).equals(b);
// Sizes may pass 2^31, so no 32-bit bitwise operators below.
const odd = (x: number): boolean => x % 2 === 1;
const half = (x: number): number => Math.floor(x / 2);

/** RFC 9162 §2.1.3.2: does `leaf` sit at `index` of the tree of `size` whose head is `root`? */
export function verifyInclusion(
  leaf: Uint8Array,
  index: number,
  size: number,
  proof: readonly Uint8Array[],
  root: Uint8Array,
): boolean {
  if (!isHash(leaf) || !isHash(root) || !proof.every(isHash)) return false;
  if (!Number.isSafeInteger(index) || !Number.isSafeInteger(size) || index < 0 || index >= size) return false;
  let fn = index;
  let sn = size - 1;
  let r: Buffer = Buffer.from(leaf);
  for (const p of proof) {
    if (sn === 0) return false;
    if (odd(fn) || fn === sn) {
      r = nodeHash(p, r);
      while (!odd(fn) && fn !== 0) {
        fn = half(fn);
        sn = half(sn);
      }
    } else {
      r = nodeHash(r, p);
    }
    fn = half(fn);
    sn = half(sn);
  }
  return sn === 0 && sameHash(r, root);
}

/** RFC 9162 §2.1.4.2: is the tree of size `second` an append-only extension of the tree of size `first`? */
export function verifyConsistency(
  first: number,
  second: number,
  firstRoot: Uint8Array,
  secondRoot: Uint8Array,
  proof: readonly Uint8Array[],
): boolean {
  if (!isHash(firstRoot) || !isHash(secondRoot) || !proof.every(isHash)) return false;
  if (!Number.isSafeInteger(first) || !Number.isSafeInteger(second) || first < 0 || first > second) {
    return false;
  }
  if (first === second) return proof.length === 0 && sameHash(firstRoot, secondRoot);
  // Every tree extends the empty one; its root says nothing to check.
  if (first === 0) return proof.length === 0 && sameHash(firstRoot, EMPTY_ROOT);
  if (proof.length === 0) return false;
  let path = [...proof];
  // A first tree that is a complete subtree is its own first node (step 2).
  if (Number.isInteger(Math.log2(first))) path = [Buffer.from(firstRoot), ...path];
  let fn = first - 1;
  let sn = second - 1;
  while (odd(fn)) {
    fn = half(fn);
    sn = half(sn);
  }
  let fr: Buffer = Buffer.from(path[0] as Uint8Array);
  let sr: Buffer = Buffer.from(path[0] as Uint8Array);
  for (const c of path.slice(1)) {
    if (sn === 0) return false;
    if (odd(fn) || fn === sn) {
      fr = nodeHash(c, fr);
      sr = nodeHash(c, sr);
      while (!odd(fn) && fn !== 0) {
        fn = half(fn);
        sn = half(sn);
      }
    } else {
      sr = nodeHash(sr, c);
    }
    fn = half(fn);
    sn = half(sn);
  }
  return sn === 0 && sameHash(fr, firstRoot) && sameHash(sr, secondRoot);
}
