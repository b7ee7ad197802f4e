"""DynamoDB adapter on boto3: dynalite locally, real AWS (or any DynamoDB endpoint) by configuration alone."""
