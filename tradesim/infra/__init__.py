"""The AWS CDK app of the whole system (`tradesim infra synth`): the same services and jobs as the local stack,
on managed engines, configured through the same TRADESIM_* settings. Imported only by the `infra` command:
aws_cdk starts a Node.js process on import."""
