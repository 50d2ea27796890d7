"""Ray, MLflow and storage around pix2pix_core: one module per job, and the `pix2pix` CLI."""
