"""AWS Lambda functions that start, report on and stop the GPU instance."""
