"""ssgan_fast.nn.MaskEmbedding: the MED-GAN Eq. 2 module around the fused mask_embed op."""
import torch

from ssgan_fast.nn import MaskEmbedding
from ssgan_fast.ops import reference as R
from ssgan_fast.ops import sample_cutmix_boxes


def test_mask_embedding_module():
    torch.manual_seed(0)
    m = MaskEmbedding(8, hidden=4)
    feat = torch.randn(3, 8, 4, 4, requires_grad=True)
    boxes, _ = sample_cutmix_boxes(3, 16, 16, generator=torch.Generator().manual_seed(0))
    mask = R.box_mask(boxes, 16, 16)
    out = m(feat, mask)
    assert torch.equal(out, feat)  # zero-initialised last conv: identity
    torch.nn.init.normal_(m.net[2].weight)
    out = m(feat, mask)
    emb = m.embed(mask, (4, 4))
    torch.testing.assert_close(out, R.mask_embed(feat, emb))
    out.sum().backward()
    assert feat.grad is not None and m.net[0].weight.grad.abs().sum() > 0
    m2 = MaskEmbedding(8, per_channel=False, emb_size=2)
    assert m2(feat, mask).shape == feat.shape
