"""Models leaving the project: the Hugging Face Hub in ESPnet's layout, and exports for other toolkits."""
