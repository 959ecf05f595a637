{
  "targets": [
    {
      "target_name": "virtiofsd_native",
      "sources": [
        "src/addon.cc", "src/sockets.cc", "src/wait.cc", "src/memory.cc", "src/fs.cc", "src/io.cc",
        "src/xattr.cc", "src/process.cc", "src/sigbus.cc", "src/sandbox.cc",
        "src/seccomp.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS", "_GNU_SOURCE"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra", "-Wno-unused-parameter", "-O2"]
    }
  ]
}
