// Emulation build: nothing to include (csrc/emu/cuda_emu.h).
#pragma once
#include "../../cuda_runtime.h"
