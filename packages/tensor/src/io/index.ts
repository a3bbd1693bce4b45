// Checkpoint file formats, host side only (plain typed arrays with dtype and shape).
export * from './dtype.js';
export { CheckpointError } from './errors.js';
export { writeFileAtomic } from './atomic.js';
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
export { ZipReader, type ZipEntry } from './zip.js';
