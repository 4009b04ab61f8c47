"""ACGAN with an additive angular margin classifier (aam-discriminator Eq. 8): `AAMHead` replaces the
softmax auxiliary classifier of the discriminator."""
import torch
from common import NUM_CLASSES, Z_DIM, Generator, d_trunk, digits, gan_losses, parse_args, report
from torch import nn

from ssgan_fast.nn import AAMHead


class Discriminator(nn.Module):
    def __init__(self):
        super().__init__()
        self.block1, self.rest = d_trunk()
        self.adv = nn.Linear(128, 1)
        self.cls = AAMHead(128, NUM_CLASSES)  # unit-norm class weights, no bias; loss starts at log C (calibrate)

    def forward(self, x):
        h = self.rest(self.block1(x))
        return self.adv(h)[:, 0], h

    def cls_loss(self, h, y):
        return self.cls.loss(h, y)  # fused margin logits + cross-entropy

    def predict(self, h):
        return self.cls(h).argmax(1)  # s * cos(theta), no margin at test time


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
