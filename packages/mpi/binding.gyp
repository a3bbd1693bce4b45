# node-gyp build of the MPI addon. The MPI compile and link flags come from the MPI compiler
# wrapper (mpicc, or $MPICC: a cluster's own MPI), read by mpi-flags.mjs.
{
  "targets": [
    {
      "target_name": "ibq_mpi",
      "sources": ["native/mpi_addon.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")", "<!@(node mpi-flags.mjs include)"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "<!@(node mpi-flags.mjs defines)"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags_cc": ["-std=c++17", "-O2"],
      "libraries": ["<!@(node mpi-flags.mjs libs)"]
    }
  ]
}
