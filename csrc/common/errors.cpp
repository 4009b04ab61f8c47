// Messages of failed kernel launches: the op, the kernel, its tensor arguments and the other backends.
#include <sstream>

#include "common/errors.h"

namespace ssgan_fast {

std::string describe(const at::Tensor& t) {
  std::ostringstream s;
  if (!t.defined()) return "undefined";
  s << c10::toString(t.scalar_type()) << "[";
  for (int64_t i = 0; i < t.dim(); ++i) s << (i ? ", " : "") << t.size(i);
  s << "]";
  if (t.dim() == 4 && !t.is_contiguous() && t.is_contiguous(at::MemoryFormat::ChannelsLast)) s << " channels_last";
  s << " " << t.device();
  return s.str();
}

std::string launch_error_message(const std::string& op, const std::string& kernel,
                                 const std::vector<std::string>& names, const std::vector<at::Tensor>& tensors,
                                 const std::string& error) {
  std::ostringstream s;
  s << "ssgan_fast op " << op << ": the cuda kernel " << kernel << " failed to launch";
  if (!tensors.empty()) s << " on " << tensors[0].device();
  s << " (ssgan_fast._C, CUDA error: " << error << ").\n  kernel arguments: ";
  for (size_t i = 0; i < tensors.size(); ++i)
    s << (i ? ", " : "") << (i < names.size() ? names[i] : "?") << "=" << describe(tensors[i]);
  s << "\n  To run this op on another backend, set SSGAN_FAST_BACKEND=triton or SSGAN_FAST_BACKEND=ref "
       "(see ssgan_fast.build_info()); please report the failure with this message.";
  return s.str();
}

}  // namespace ssgan_fast
