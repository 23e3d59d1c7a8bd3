/**
 * Reads what torch.save wrote, without Python:
 * - the zip format (PyTorch >= 1.6): `<prefix>/data.pkl`, a pickle whose tensors point through
 *   persistent ids ('storage', torch.FloatStorage, key, location, numel) at raw little-endian
 *   storages `<prefix>/data/<key>`;
 * - the legacy format (older files such as lukemelas' efficientnet-b0-355c32eb.pth): pickles
 *   back to back (magic number, protocol version, system info, the object, the storage keys),
 *   then each storage as an int64 element count and its raw bytes.
 * Tensors (torch._utils._rebuild_tensor_v2: storage, offset, size, stride) become SourceTensors
 * with contiguous little-endian data; strided views are gathered.
 */
import { WeightsError } from './errors';
import { PyDict, PyGlobal, PyList, PyOpaque, PyTuple, PyValue, describePy, unpickle } from './pickle';
import { ZipArchive, isZip } from './zip';

export type SourceDType = 'F32' | 'F16' | 'BF16' | 'F64' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

export const SOURCE_DTYPE_BYTES: Record<SourceDType, number> = { F32: 4, F16: 2, BF16: 2, F64: 8, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1 };
export const FLOAT_DTYPES: readonly SourceDType[] = ['F32', 'F16', 'BF16', 'F64'];

/** A tensor as read from a file: contiguous little-endian bytes. */
export interface SourceTensor {
  name: string;
  dtype: SourceDType;
  shape: number[];
  data: Buffer;
}

const STORAGE_DTYPES: Record<string, SourceDType> = {
  FloatStorage: 'F32',
  HalfStorage: 'F16',
  BFloat16Storage: 'BF16',
  DoubleStorage: 'F64',
  LongStorage: 'I64',
  IntStorage: 'I32',
  ShortStorage: 'I16',
  CharStorage: 'I8',
  ByteStorage: 'U8',
  BoolStorage: 'BOOL',
};

/** The legacy format's first pickle: this magic number. */
const LEGACY_MAGIC = 0x1950a86a20f9469cfc6cn;

interface StorageRef {
  key: string;
  dtype: SourceDType;
  numel: number;
  data?: Buffer;
}

interface TensorRef {
  storage: StorageRef;
  offset: number;
  shape: number[];
  stride: number[];
}

export class TorchTensor extends PyOpaque {
  constructor(readonly ref: TensorRef) {
    super(ref);
  }
}
class TorchStorage extends PyOpaque {
  constructor(readonly ref: StorageRef) {
    super(ref);
  }
}

function intList(value: PyValue, what: string, fail: (why: string) => never): number[] {
  if (!(value instanceof PyTuple) && !(value instanceof PyList)) fail(`${what} is ${describePy(value)}, not a tuple of integers`);
  const items = (value as PyTuple).items;
  return items.map((v) => {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) fail(`${what} holds ${describePy(v)}, not a non-negative integer`);
    return v as number;
  });
}

/** The few callables a state dict's pickle may call, and a clear refusal for everything else. */
function callHook(source: string) {
  const fail = (why: string): never => {
    throw new WeightsError(`${source}: ${why}`, 'ERR_WEIGHTS_FORMAT');
  };
  return (callable: PyGlobal, args: PyValue[]): PyValue => {
    switch (callable.qualified) {
      case 'collections.OrderedDict':
      case 'builtins.dict':
        if (args.length) fail(`${callable.qualified} called with arguments is not supported`);
        return new PyDict();
      case 'torch._utils._rebuild_tensor':
      case 'torch._utils._rebuild_tensor_v2': {
        const [storage, offset, size, stride] = args;
        if (!(storage instanceof TorchStorage)) fail(`${callable.qualified} got ${describePy(storage ?? null)} instead of a storage`);
        if (typeof offset !== 'number' || offset < 0) fail(`${callable.qualified} got the storage offset ${describePy(offset ?? null)}`);
        const shape = intList(size ?? null, 'a tensor size', fail);
        const strides = intList(stride ?? null, 'a tensor stride', fail);
        if (shape.length !== strides.length) fail(`a tensor has size [${shape}] but stride [${strides}]`);
        return new TorchTensor({ storage: (storage as TorchStorage).ref, offset: offset as number, shape, stride: strides });
      }
      case 'torch._utils._rebuild_parameter':
      case 'torch._utils._rebuild_parameter_with_state':
        if (!(args[0] instanceof TorchTensor)) fail(`${callable.qualified} got ${describePy(args[0] ?? null)} instead of a tensor`);
        return args[0];
      case 'torch.device':
        return new PyOpaque(`device ${String(args[0])}`);
      default: {
        const model = /^[A-Z]/.test(callable.name) ? ' (a whole model saved with torch.save(model)?)' : '';
        return fail(
          `it pickles an object of ${callable.qualified}${model}, which a state dict does not contain; ` +
            'this reader loads state dicts only: in Python, `torch.save(torch.load(path).state_dict(), "state_dict.pth")` ' +
            '(or `torch.save(model.state_dict(), ...)`) and import that file',
        );
      }
    }
  };
}

function persistentHook(source: string, storages: Map<string, StorageRef>) {
  const fail = (why: string): never => {
    throw new WeightsError(`${source}: ${why}`, 'ERR_WEIGHTS_FORMAT');
  };
  return (pid: PyValue): PyValue => {
    if (!(pid instanceof PyTuple) || pid.items[0] !== 'storage' || pid.items.length < 5)
      fail(`unsupported persistent id ${describePy(pid)} (expected ('storage', type, key, location, size))`);
    const [, type, key, , numel, view] = (pid as PyTuple).items;
    if (!(type instanceof PyGlobal) || type.module !== 'torch')
      fail(`storage type ${describePy(type)} is not a torch storage class`);
    const dtype = STORAGE_DTYPES[(type as PyGlobal).name];
    if (!dtype)
      fail(
        `tensors stored as ${(type as PyGlobal).qualified} are not supported (supported: ${Object.keys(STORAGE_DTYPES).join(', ')}); ` +
          'quantized or complex weights cannot be imported: save float weights',
      );
    if (typeof key !== 'string') fail(`storage key ${describePy(key)} is not a string`);
    if (typeof numel !== 'number' || numel < 0) fail(`storage '${String(key)}' has size ${describePy(numel)}`);
    if (view !== undefined && view !== null) fail(`storage '${String(key)}' is a view (a very old torch.save format): re-save the file with a current PyTorch`);
    let storage = storages.get(key as string);
    if (!storage) {
      storage = { key: key as string, dtype, numel: numel as number };
      storages.set(key as string, storage);
    }
    return new TorchStorage(storage);
  };
}

export interface TorchFile {
  /** The unpickled object; tensors are TorchTensor values. */
  root: PyValue;
  format: 'zip' | 'legacy';
}

export function isLegacyTorch(bytes: Buffer): boolean {
  // PROTO 2, LONG1 10 bytes: the magic number
  return bytes.length >= 3 && bytes[0] === 0x80 && bytes[1] === 0x02 && bytes[2] === 0x8a;
}

export function readTorchFile(bytes: Buffer, source: string): TorchFile {
  const storages = new Map<string, StorageRef>();
  const hooks = { call: callHook(source), persistentLoad: persistentHook(source, storages) };
  const fail = (why: string): never => {
    throw new WeightsError(`${source}: ${why}`, 'ERR_WEIGHTS_FORMAT');
  };
  if (isZip(bytes)) {
    const zip = new ZipArchive(bytes, source);
    const pickleName = [...zip.entries.keys()].find((name) => name === 'data.pkl' || name.endsWith('/data.pkl'));
    if (!pickleName)
      fail(`the zip archive has no data.pkl, so it was not written by torch.save (entries: ${[...zip.entries.keys()].slice(0, 5).join(', ')})`);
    const prefix = (pickleName as string).slice(0, -'data.pkl'.length);
    const byteorder = zip.entries.has(`${prefix}byteorder`) ? zip.read(`${prefix}byteorder`).toString('latin1').trim() : 'little';
    if (byteorder !== 'little') fail(`its tensors are stored ${byteorder}-endian; re-save it on a little-endian machine`);
    const root = unpickle(zip.read(pickleName as string), hooks, source).value;
    for (const storage of storages.values()) {
      const entry = `${prefix}data/${storage.key}`;
      if (!zip.entries.has(entry)) fail(`the archive lacks storage '${entry}' that a tensor refers to`);
      storage.data = zip.read(entry);
    }
    return { root, format: 'zip' };
  }
  if (isLegacyTorch(bytes)) {
    const magic = unpickle(bytes, hooks, source, 0);
    if (magic.value !== null && typeof magic.value === 'object') fail('its first pickle is not the torch.save magic number');
    if (BigInt(magic.value as number | bigint) !== LEGACY_MAGIC) fail('it starts with a pickled number that is not the torch.save magic number');
    const protocol = unpickle(bytes, hooks, source, magic.end);
    if (protocol.value !== 1001) fail(`legacy torch.save protocol ${describePy(protocol.value)} is not supported (expected 1001)`);
    const sysInfo = unpickle(bytes, hooks, source, protocol.end);
    if (sysInfo.value instanceof PyDict && sysInfo.value.map.get('little_endian') === false) fail('its tensors are stored big-endian');
    const main = unpickle(bytes, hooks, source, sysInfo.end);
    const keys = unpickle(bytes, hooks, source, main.end);
    if (!(keys.value instanceof PyList)) fail('the list of storage keys after the pickle is missing');
    let pos = keys.end;
    for (const key of (keys.value as PyList).items) {
      if (typeof key !== 'string') fail(`storage key ${describePy(key)} is not a string`);
      const storage = storages.get(key as string);
      if (pos + 8 > bytes.length) fail(`storage '${String(key)}' starts at byte ${pos}, past the end of the file (${bytes.length} bytes): the file is truncated; download it again`);
      const numel = Number(bytes.readBigInt64LE(pos));
      pos += 8;
      const elementBytes = SOURCE_DTYPE_BYTES[storage?.dtype ?? 'U8'];
      const length = numel * elementBytes;
      if (numel < 0 || pos + length > bytes.length)
        fail(`storage '${String(key)}' (${numel} elements from byte ${pos}) runs past the end of the file (${bytes.length} bytes): the file is truncated; download it again`);
      if (storage) {
        if (numel !== storage.numel) fail(`storage '${String(key)}' holds ${numel} elements but the pickle says ${storage.numel}`);
        storage.data = bytes.subarray(pos, pos + length);
      }
      pos += length;
    }
    for (const storage of storages.values()) if (!storage.data) fail(`storage '${storage.key}' that a tensor refers to is not in the file`);
    return { root: main.value, format: 'legacy' };
  }
  const head = bytes.subarray(0, 16).toString('latin1').replace(/[^\x20-\x7e]/g, '.');
  return fail(
    `it is neither a torch.save zip archive, a legacy torch.save file nor a safetensors file (it starts with '${head}'); ` +
      (bytes.length < 64 ? `it is only ${bytes.length} bytes long: truncated? ` : '') +
      'TorchScript archives and ONNX or TensorFlow files are not supported: save the state dict with torch.save(model.state_dict(), path)',
  );
}

/** The contiguous bytes of a tensor (a view when it is already contiguous). */
export function materialize(name: string, ref: TensorRef, source: string): SourceTensor {
  const { storage, offset, shape, stride } = ref;
  const elementBytes = SOURCE_DTYPE_BYTES[storage.dtype];
  const data = storage.data as Buffer;
  const numel = shape.reduce((a, b) => a * b, 1);
  const available = Math.floor(data.length / elementBytes);
  const fail = (why: string): never => {
    throw new WeightsError(`${source}: tensor '${name}' ${why}`, 'ERR_WEIGHTS_FORMAT');
  };
  if (numel === 0) return { name, dtype: storage.dtype, shape, data: Buffer.alloc(0) };
  let last = offset;
  for (let i = 0; i < shape.length; i++) last += (shape[i] - 1) * stride[i];
  if (last >= available)
    fail(`(size [${shape}], stride [${stride}], offset ${offset}) reaches element ${last} of a storage of ${available}: the file is truncated or damaged`);
  let contiguous = true;
  let expected = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    if (shape[i] !== 1 && stride[i] !== expected) contiguous = false;
    expected *= shape[i];
  }
  if (contiguous) return { name, dtype: storage.dtype, shape, data: data.subarray(offset * elementBytes, (offset + numel) * elementBytes) };
  const out = Buffer.alloc(numel * elementBytes);
  const index = new Array(shape.length).fill(0);
  for (let n = 0; n < numel; n++) {
    let element = offset;
    for (let i = 0; i < shape.length; i++) element += index[i] * stride[i];
    data.copy(out, n * elementBytes, element * elementBytes, (element + 1) * elementBytes);
    for (let i = shape.length - 1; i >= 0; i--) {
      if (++index[i] < shape[i]) break;
      index[i] = 0;
    }
  }
  return { name, dtype: storage.dtype, shape, data: out };
}
