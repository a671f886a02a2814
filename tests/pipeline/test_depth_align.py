

def test_bilinear_reads_are_exact_on_an_affine_image():
    from mirage.pipeline.depth_align import sample_bilinear

    H, W = 5, 7
    v, u = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij")
    image = 2 + 0.3 * u - 0.1 * v
    uv = np.array([[0.0, 0.0], [2.25, 1.5], [5.9, 3.99], [6.4, 4.4], [-0.4, 2.0], [6.5, 1.0], [1.0, -0.6]])
    got = sample_bilinear(image, uv)
    want = 2 + 0.3 * np.clip(uv[:, 0], 0, W - 1) - 0.1 * np.clip(uv[:, 1], 0, H - 1)
    np.testing.assert_allclose(got[:5], want[:5], rtol=1e-12)  # inside (the outer half pixel reads the edge)
    assert np.isnan(got[5:]).all()  # beyond the image
    image[2, 3] = math.nan
    assert np.isnan(sample_bilinear(image, np.array([[3.5, 2.5]])))[0] and np.isfinite(sample_bilinear(image, np.array([[1.0, 1.0]])))[0]
