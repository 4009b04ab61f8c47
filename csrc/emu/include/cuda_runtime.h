// The emulation build's cuda_runtime.h (csrc/emu/cuda_emu.h): first on its include path, so the .cu
// files compile with the host compiler unchanged.
#pragma once
#include "../cuda_emu.h"
