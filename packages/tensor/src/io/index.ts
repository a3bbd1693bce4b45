// Checkpoint file formats now live in @ibq/formats; @ibq/tensor re-exports the names it has
// always exported so that its users keep working.
export {
  type HostDType, type HostTypedArray, type HostTensor, HOST_DTYPES, isHostDType, hostDTypeSize, shapeNumel, allocHost, checkHostTensor, bytesOf, fromBytes, assertLittleEndianHost, f16BitsToNumber, numberToF16Bits, bf16BitsToNumber, numberToBf16Bits, f16ToF32, bf16ToF32, f32ToF16, f32ToBf16, toFloat32, int64ToInt32,
  CheckpointError, writeFileAtomic, SafetensorsReader, readSafetensors, writeSafetensors, encodeSafetensors, decodeSafetensors,
  SAFETENSORS_MAX_HEADER_BYTES, type SafetensorsTensorInfo, type LazyHostTensor, type SafetensorsInput,
  type SafetensorsWriteOptions, TorchCheckpoint, TorchTensorRef, TorchStorage, TorchStorageType, TorchDType,
  loadTorchStateDict, type TorchLoadOptions, unpickle, pyAttributes, isTuple, PyOpaqueGlobal, PyOpaqueObject,
  DisallowedGlobalError, MemorySource, type ByteSource, ZipReader, type ZipEntry,
} from '@ibq/formats';
