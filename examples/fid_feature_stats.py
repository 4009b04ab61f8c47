"""FID with `FeatureStats` (streaming float64 mean / covariance on the features' device, fused kernels) and
`frechet_distance` (tr sqrt(S1 S2) from symmetric eigendecompositions: no complex sqrtm, no host copy).
Pass labels to `update` and `num_classes` to get Intra-FID from the same pass."""
import torch
from common import fid_setup

from ssgan_fast.ops import FeatureStats, frechet_distance


def statistics(net, images, batch):
    st = FeatureStats(64, device=images.device)
    for i in range(0, len(images), batch):
        st.update(net(images[i:i + batch]))  # O(D^2) memory, whatever N
    return st.mean(), st.cov()


def main():
    net, real, fake, batch = fid_setup(__doc__)
    with torch.no_grad():
        fid = frechet_distance(*statistics(net, real, batch), *statistics(net, fake, batch))
    print(f"FID {fid:.8g}")


if __name__ == "__main__":
    main()
