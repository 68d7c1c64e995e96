"""Lightning glue: the LightningModule, the data module, callbacks. Thin: the maths lives in ``pg_lightning.core``."""
