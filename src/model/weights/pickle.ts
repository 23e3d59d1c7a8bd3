/**
 * A minimal pickle virtual machine: the opcodes (protocols 2 to 5) that torch.save writes for
 * state dicts and training checkpoints. It builds plain values and never runs code: a GLOBAL is
 * only a name, and REDUCE / NEWOBJ / BINPERSID go to callbacks that accept the few callables a
 * state dict needs (collections.OrderedDict, torch._utils._rebuild_tensor_v2 ...) and reject
 * the rest by name. Every read is bounds-checked: a truncated pickle ends in a WeightsError.
 */
import { WeightsError } from './errors';

export class PyTuple {
  constructor(readonly items: PyValue[]) {}
}
export class PyList {
  constructor(readonly items: PyValue[]) {}
}
/** A dict or OrderedDict: keys are Python scalars (str, int, bool, None). */
export class PyDict {
  readonly map = new Map<PyKey, PyValue>();
  /** Instance state set by BUILD (an OrderedDict's `_metadata`), kept but unused. */
  state: PyValue = null;
}
/** A module-level name (GLOBAL / STACK_GLOBAL): `torch._utils._rebuild_tensor_v2`. */
export class PyGlobal {
  constructor(
    readonly module: string,
    readonly name: string,
  ) {}
  get qualified(): string {
    return `${this.module}.${this.name}`;
  }
}
/** What REDUCE / BINPERSID callbacks return for values the VM knows nothing about. */
export class PyOpaque {
  constructor(readonly value: unknown) {}
}
export type PyKey = string | number | bigint | boolean | null;
export type PyValue = PyKey | Buffer | PyTuple | PyList | PyDict | PyGlobal | PyOpaque | PySet;
export class PySet {
  constructor(readonly items: PyValue[]) {}
}

export interface PickleHooks {
  /** BINPERSID: the persistent id (a tuple for torch storages) to the object it names. */
  persistentLoad(pid: PyValue): PyValue;
  /** REDUCE and NEWOBJ: call `callable` with `args`. Throw for callables that are not allowed. */
  call(callable: PyGlobal, args: PyValue[]): PyValue;
}

const MARK = Symbol('mark');
type StackItem = PyValue | typeof MARK;

const OPCODE_NAMES: Record<number, string> = {
  0x80: 'PROTO', 0x95: 'FRAME', 0x2e: 'STOP', 0x28: 'MARK', 0x30: 'POP', 0x31: 'POP_MARK', 0x32: 'DUP',
  0x4e: 'NONE', 0x88: 'NEWTRUE', 0x89: 'NEWFALSE', 0x4a: 'BININT', 0x4b: 'BININT1', 0x4d: 'BININT2',
  0x8a: 'LONG1', 0x8b: 'LONG4', 0x47: 'BINFLOAT', 0x58: 'BINUNICODE', 0x8c: 'SHORT_BINUNICODE',
  0x8d: 'BINUNICODE8', 0x54: 'BINSTRING', 0x55: 'SHORT_BINSTRING', 0x42: 'BINBYTES', 0x43: 'SHORT_BINBYTES',
  0x8e: 'BINBYTES8', 0x5d: 'EMPTY_LIST', 0x61: 'APPEND', 0x65: 'APPENDS', 0x6c: 'LIST', 0x7d: 'EMPTY_DICT',
  0x64: 'DICT', 0x73: 'SETITEM', 0x75: 'SETITEMS', 0x29: 'EMPTY_TUPLE', 0x74: 'TUPLE', 0x85: 'TUPLE1',
  0x86: 'TUPLE2', 0x87: 'TUPLE3', 0x71: 'BINPUT', 0x72: 'LONG_BINPUT', 0x68: 'BINGET', 0x6a: 'LONG_BINGET',
  0x94: 'MEMOIZE', 0x63: 'GLOBAL', 0x93: 'STACK_GLOBAL', 0x52: 'REDUCE', 0x62: 'BUILD', 0x81: 'NEWOBJ',
  0x51: 'BINPERSID', 0x8f: 'EMPTY_SET', 0x90: 'ADDITEMS', 0x91: 'FROZENSET',
};

/** A short description of a value for messages. */
export function describePy(value: PyValue | typeof MARK): string {
  if (value === MARK) return 'a MARK';
  if (value === null) return 'None';
  if (typeof value === 'string') return `'${value.length > 40 ? value.slice(0, 40) + '...' : value}'`;
  if (typeof value !== 'object') return String(value);
  if (Buffer.isBuffer(value)) return `bytes(${value.length})`;
  if (value instanceof PyGlobal) return value.qualified;
  return value.constructor.name.replace(/^Py/, '').toLowerCase();
}

/**
 * Runs one pickle starting at `start`; returns the value and the offset after its STOP opcode
 * (legacy torch files hold several pickles back to back).
 */
export function unpickle(bytes: Buffer, hooks: PickleHooks, source: string, start = 0): { value: PyValue; end: number } {
  let pos = start;
  const stack: StackItem[] = [];
  const marks: number[] = [];
  const memo = new Map<number, PyValue>();

  const fail = (why: string): never => {
    throw new WeightsError(`${source}: cannot read its pickle: ${why}`, 'ERR_WEIGHTS_FORMAT');
  };
  const need = (n: number, what: string) => {
    if (n < 0 || pos + n > bytes.length)
      fail(`${what} at byte ${pos} needs ${n} bytes but the data ends at ${bytes.length}: the file is truncated; download it again`);
  };
  const u8 = (what: string) => {
    need(1, what);
    return bytes[pos++];
  };
  const u16 = (what: string) => {
    need(2, what);
    const v = bytes.readUInt16LE(pos);
    pos += 2;
    return v;
  };
  const u32 = (what: string) => {
    need(4, what);
    const v = bytes.readUInt32LE(pos);
    pos += 4;
    return v;
  };
  const i32 = (what: string) => {
    need(4, what);
    const v = bytes.readInt32LE(pos);
    pos += 4;
    return v;
  };
  const u64 = (what: string) => {
    need(8, what);
    const v = bytes.readBigUInt64LE(pos);
    pos += 8;
    if (v > BigInt(bytes.length)) fail(`${what} claims ${v} bytes, more than the whole data (${bytes.length}): the file is truncated or damaged`);
    return Number(v);
  };
  const take = (n: number, what: string) => {
    need(n, what);
    const slice = bytes.subarray(pos, pos + n);
    pos += n;
    return slice;
  };
  const line = (what: string) => {
    const end = bytes.indexOf(0x0a, pos);
    if (end < 0) fail(`${what} at byte ${pos} has no end of line: the file is truncated`);
    const text = bytes.toString('utf8', pos, end);
    pos = end + 1;
    return text;
  };
  const pop = (what: string): PyValue => {
    const top = stack.pop();
    if (top === undefined) fail(`${what} at byte ${pos} found an empty stack`);
    if (top === MARK) fail(`${what} at byte ${pos} found a MARK where a value was expected`);
    return top as PyValue;
  };
  const popMark = (what: string): PyValue[] => {
    const mark = marks.pop();
    if (mark === undefined) fail(`${what} at byte ${pos} has no MARK`);
    const items = stack.splice(mark as number);
    items.shift(); // the MARK itself
    if (items.includes(MARK)) fail(`${what} at byte ${pos}: nested MARK`);
    return items as PyValue[];
  };
  const top = (what: string): PyValue => {
    const value = stack[stack.length - 1];
    if (value === undefined || value === MARK) fail(`${what} at byte ${pos} has no object to act on`);
    return value as PyValue;
  };
  const key = (k: PyValue, what: string): PyKey => {
    if (k !== null && typeof k === 'object') fail(`${what} at byte ${pos}: a dict key of type ${describePy(k)} is not supported`);
    return k as PyKey;
  };
  const setItems = (dict: PyValue, items: PyValue[], what: string) => {
    if (!(dict instanceof PyDict)) fail(`${what} at byte ${pos} applies to ${describePy(dict)}, not a dict`);
    if (items.length % 2) fail(`${what} at byte ${pos}: an odd number of items`);
    for (let i = 0; i < items.length; i += 2) (dict as PyDict).map.set(key(items[i], what), items[i + 1]);
  };
  const append = (list: PyValue, items: PyValue[], what: string) => {
    if (list instanceof PyList || list instanceof PySet) list.items.push(...items);
    else fail(`${what} at byte ${pos} applies to ${describePy(list)}, not a list`);
  };
  const memoGet = (index: number, what: string) => {
    if (!memo.has(index)) fail(`${what} at byte ${pos} refers to memo ${index}, never stored`);
    return memo.get(index) as PyValue;
  };
  const toNumber = (v: bigint): number | bigint => (v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v);
  const long = (data: Buffer): number | bigint => {
    if (data.length === 0) return 0;
    let v = 0n;
    for (let i = data.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(data[i]);
    if (data[data.length - 1] & 0x80) v -= 1n << BigInt(8 * data.length);
    return toNumber(v);
  };

  for (;;) {
    const at = pos;
    const op = u8('an opcode');
    const name = OPCODE_NAMES[op] ?? `0x${op.toString(16)}`;
    switch (op) {
      case 0x80: // PROTO
        if (u8(name) > 5) fail(`pickle protocol ${bytes[pos - 1]} is newer than 5`);
        break;
      case 0x95: // FRAME: only a length hint
        u64(name);
        break;
      case 0x2e: // STOP
        return { value: pop(name), end: pos };
      case 0x28: // MARK
        marks.push(stack.length);
        stack.push(MARK);
        break;
      case 0x30: // POP
        if (stack.pop() === MARK) marks.pop();
        break;
      case 0x31: // POP_MARK
        popMark(name);
        break;
      case 0x32: // DUP
        stack.push(top(name));
        break;
      case 0x4e: // NONE
        stack.push(null);
        break;
      case 0x88: // NEWTRUE
        stack.push(true);
        break;
      case 0x89: // NEWFALSE
        stack.push(false);
        break;
      case 0x4a: // BININT
        stack.push(i32(name));
        break;
      case 0x4b: // BININT1
        stack.push(u8(name));
        break;
      case 0x4d: // BININT2
        stack.push(u16(name));
        break;
      case 0x8a: // LONG1
        stack.push(long(take(u8(name), name)));
        break;
      case 0x8b: {
        // LONG4
        const n = i32(name);
        if (n < 0) fail(`${name} at byte ${at}: negative length`);
        stack.push(long(take(n, name)));
        break;
      }
      case 0x47: // BINFLOAT (big-endian double)
        need(8, name);
        stack.push(bytes.readDoubleBE(pos));
        pos += 8;
        break;
      case 0x58: // BINUNICODE
        stack.push(take(u32(name), name).toString('utf8'));
        break;
      case 0x8c: // SHORT_BINUNICODE
        stack.push(take(u8(name), name).toString('utf8'));
        break;
      case 0x8d: // BINUNICODE8
        stack.push(take(u64(name), name).toString('utf8'));
        break;
      case 0x54: {
        // BINSTRING (Python 2 str): latin-1 text
        const n = i32(name);
        if (n < 0) fail(`${name} at byte ${at}: negative length`);
        stack.push(take(n, name).toString('latin1'));
        break;
      }
      case 0x55: // SHORT_BINSTRING
        stack.push(take(u8(name), name).toString('latin1'));
        break;
      case 0x42: // BINBYTES
        stack.push(take(u32(name), name));
        break;
      case 0x43: // SHORT_BINBYTES
        stack.push(take(u8(name), name));
        break;
      case 0x8e: // BINBYTES8
        stack.push(take(u64(name), name));
        break;
      case 0x5d: // EMPTY_LIST
        stack.push(new PyList([]));
        break;
      case 0x61: {
        // APPEND
        const value = pop(name);
        append(top(name), [value], name);
        break;
      }
      case 0x65: {
        // APPENDS
        const items = popMark(name);
        append(top(name), items, name);
        break;
      }
      case 0x6c: // LIST
        stack.push(new PyList(popMark(name)));
        break;
      case 0x7d: // EMPTY_DICT
        stack.push(new PyDict());
        break;
      case 0x64: {
        // DICT
        const dict = new PyDict();
        setItems(dict, popMark(name), name);
        stack.push(dict);
        break;
      }
      case 0x73: {
        // SETITEM
        const value = pop(name);
        const k = pop(name);
        setItems(top(name), [k, value], name);
        break;
      }
      case 0x75: {
        // SETITEMS
        const items = popMark(name);
        setItems(top(name), items, name);
        break;
      }
      case 0x29: // EMPTY_TUPLE
        stack.push(new PyTuple([]));
        break;
      case 0x74: // TUPLE
        stack.push(new PyTuple(popMark(name)));
        break;
      case 0x85: // TUPLE1
        stack.push(new PyTuple([pop(name)]));
        break;
      case 0x86: {
        // TUPLE2
        const b = pop(name);
        stack.push(new PyTuple([pop(name), b]));
        break;
      }
      case 0x87: {
        // TUPLE3
        const c = pop(name);
        const b = pop(name);
        stack.push(new PyTuple([pop(name), b, c]));
        break;
      }
      case 0x71: // BINPUT
        memo.set(u8(name), top(name));
        break;
      case 0x72: // LONG_BINPUT
        memo.set(u32(name), top(name));
        break;
      case 0x94: // MEMOIZE
        memo.set(memo.size, top(name));
        break;
      case 0x68: // BINGET
        stack.push(memoGet(u8(name), name));
        break;
      case 0x6a: // LONG_BINGET
        stack.push(memoGet(u32(name), name));
        break;
      case 0x63: {
        // GLOBAL: "module\nname\n"
        const module = line(name);
        stack.push(new PyGlobal(module, line(name)));
        break;
      }
      case 0x93: {
        // STACK_GLOBAL
        const qualname = pop(name);
        const module = pop(name);
        if (typeof module !== 'string' || typeof qualname !== 'string') fail(`${name} at byte ${at} needs two strings`);
        stack.push(new PyGlobal(module as string, qualname as string));
        break;
      }
      case 0x52: // REDUCE
      case 0x81: {
        // NEWOBJ (cls, args): the same call for what a state dict holds
        const args = pop(name);
        const callable = pop(name);
        if (!(callable instanceof PyGlobal)) fail(`${name} at byte ${at} calls ${describePy(callable)}, not a global`);
        if (!(args instanceof PyTuple)) fail(`${name} at byte ${at} passes ${describePy(args)} as arguments, not a tuple`);
        stack.push(hooks.call(callable as PyGlobal, (args as PyTuple).items));
        break;
      }
      case 0x62: {
        // BUILD: object state (an OrderedDict's _metadata); kept, not interpreted
        const state = pop(name);
        const target = top(name);
        if (target instanceof PyDict) target.state = state;
        else if (!(target instanceof PyOpaque)) fail(`${name} at byte ${at} sets the state of ${describePy(target)}`);
        break;
      }
      case 0x51: // BINPERSID
        stack.push(hooks.persistentLoad(pop(name)));
        break;
      case 0x8f: // EMPTY_SET
        stack.push(new PySet([]));
        break;
      case 0x90: {
        // ADDITEMS
        const items = popMark(name);
        append(top(name), items, name);
        break;
      }
      case 0x91: // FROZENSET
        stack.push(new PySet(popMark(name)));
        break;
      default:
        fail(
          `opcode ${name} at byte ${at} is not one a torch.save state dict uses` +
            (OPCODE_NAMES[op] ? '' : ' (or the file is damaged)') +
            ': load the file in Python and save its state dict with torch.save(model.state_dict(), path)',
        );
    }
  }
}
