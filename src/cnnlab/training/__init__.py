"""Training: the LightningModule, its optimizer and learning-rate schedules, regularisers and
fine-tuning."""
