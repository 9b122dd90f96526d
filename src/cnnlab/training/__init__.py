"""Training: the LightningModule, its optimizer and schedules, regularisers and fine-tuning."""
