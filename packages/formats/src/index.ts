// @ibq/formats: the one home of every file format the project reads or writes, on Node
// built-ins only (no tensors, no devices): zip (ZIP64), .npy, .npz, safetensors, the
// weights-only PyTorch checkpoint reader, and the atomic writer every writer goes through.
export { AtomicFile, writeFileAtomic, writeFileAtomicSync, type AtomicContent, type AtomicOptions, type SequentialWriter } from './atomic.js';
export { CheckpointError, DataFormatError } from './errors.js';
export { MemoryFile, RandomAccessFile, type RandomAccess } from './file.js';
export * from './dtype.js';
export {
  crc32, encodeZip, MemorySink, ZipReader, ZipWriter, type ZipEntry, type ZipMethod, type ZipSink, type ZipWriterOptions,
} from './zip.js';
export {
  decodeNpy, dtypeOf, dtypeSize, encodeNpy, normaliseNpyData, NpyFile, npyHeader, parseNpyHeader, readNpy, typedFromBytes,
  writeNpy, type NpyArray, type NpyData, type NpyDtype, type NpyHeader,
} from './npy.js';
export { encodeNpz, NpzFile, NpzWriter, readNpz, SampleNpzWriter, writeNpz, type NpzInput, type NpzWriterOptions } from './npz.js';
export {
  SafetensorsReader,
  readSafetensors,
  writeSafetensors,
  encodeSafetensors,
  decodeSafetensors,
  SAFETENSORS_MAX_HEADER_BYTES,
  type SafetensorsTensorInfo,
  type LazyHostTensor,
  type SafetensorsInput,
  type SafetensorsWriteOptions,
} from './safetensors.js';
export {
  TorchCheckpoint,
  TorchTensorRef,
  TorchStorage,
  TorchStorageType,
  TorchDType,
  loadTorchStateDict,
  type TorchLoadOptions,
} from './torch.js';
export {
  unpickle,
  pyAttributes,
  isTuple,
  PyOpaqueGlobal,
  PyOpaqueObject,
  DisallowedGlobalError,
  MemorySource,
  type ByteSource,
} from './pickle.js';
