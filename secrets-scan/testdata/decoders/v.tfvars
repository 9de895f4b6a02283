x = <<EOT
line
EOT
blk {
  y = "z"
}
