"""ACGAN with MED-GAN's constructed instances: `cutmix` pastes a real box into a generated image (Eq. 1),
`MaskEmbedding` tells the discriminator which pixels are real (Eq. 2); the classifier learns the mixed
image with labels weighted by area (Eq. 9) and the constructed image counts as real (L_idnt, Eq. 11)."""
import torch
import torch.nn.functional as F
from common import NUM_CLASSES, Z_DIM, Generator, d_trunk, digits, gan_losses, parse_args, report
from torch import nn

from ssgan_fast.nn import MaskEmbedding
from ssgan_fast.ops import cutmix, sample_cutmix_boxes


class Discriminator(nn.Module):
    def __init__(self):
        super().__init__()
        self.block1, self.rest = d_trunk()
        self.mask = MaskEmbedding(32)  # after block1 (32 channels); starts as the identity
        self.adv = nn.Linear(128, 1)
        self.cls = nn.Linear(128, NUM_CLASSES)

    def forward(self, x, mask=None):
        h = self.block1(x)
        if mask is not None:
            h = self.mask(h, mask)  # Eq. 2: h + A_mask(m) * h, fused
        h = self.rest(h)
        return self.adv(h)[:, 0], h

    def cls_loss(self, h, y):
        return F.cross_entropy(self.cls(h), y)

    def predict(self, h):
        return self.cls(h).argmax(1)


def main():
    args = parse_args(__doc__)
    torch.manual_seed(args.seed)
    x_all, y_all = digits(args.device)
    G, D = Generator().to(args.device), Discriminator().to(args.device)
    opt_g = torch.optim.Adam(G.parameters(), 2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), 2e-4, betas=(0.5, 0.999))
    for _ in range(args.steps):
        idx = torch.randint(0, len(x_all), (args.batch,), device=args.device)
        x, y = x_all[idx], y_all[idx]
        y_z = torch.randint(0, NUM_CLASSES, (args.batch,), device=args.device)
        x_z = G(torch.randn(args.batch, Z_DIM, device=args.device), y_z)

        out_r, h_r = D(x)
        out_f, h_f = D(x_z.detach())
        loss_d = gan_losses(out_r, out_f)[0] + D.cls_loss(h_r, y) + D.cls_loss(h_f, y_z)
        boxes, area = sample_cutmix_boxes(args.batch, 8, 8, alpha=0.2, device=args.device)
        x_m, m = cutmix(x, x_z.detach(), boxes)  # Eq. 1: x inside the box, x_z outside
        out_m, h_m = D(x_m, m)
        ce_m = area * F.cross_entropy(D.cls(h_m), y, reduction="none") \
            + (1 - area) * F.cross_entropy(D.cls(h_m), y_z, reduction="none")  # Eq. 9
        loss_d = loss_d + ce_m.mean() + 0.1 * F.softplus(-out_m).mean()  # Eq. 11, mu = 0.1
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()

        out_f, h_f = D(x_z)
        loss_g = gan_losses(out_r.detach(), out_f)[1] + D.cls_loss(h_f, y_z)
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
    report(G, D, x_all, y_all, args.steps)


if __name__ == "__main__":
    main()
