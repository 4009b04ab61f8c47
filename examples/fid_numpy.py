"""FID the pytorch-fid / torch-fidelity way: keep every feature on the host, numpy mean / cov, scipy sqrtm."""
import numpy as np
import torch
from common import fid_setup
from scipy import linalg


def statistics(net, images, batch):
    feats = [net(images[i:i + batch]).double().cpu().numpy() for i in range(0, len(images), batch)]
    f = np.concatenate(feats)  # [N, D] kept in memory
    return f.mean(0), np.cov(f, rowvar=False)


def frechet(mu1, sigma1, mu2, sigma2):
    covmean = linalg.sqrtm(sigma1 @ sigma2)
    covmean = covmean.real if np.iscomplexobj(covmean) else covmean
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def main():
    net, real, fake, batch = fid_setup(__doc__)
    with torch.no_grad():
        fid = frechet(*statistics(net, real, batch), *statistics(net, fake, batch))
    print(f"FID {fid:.8g}")


if __name__ == "__main__":
    main()
