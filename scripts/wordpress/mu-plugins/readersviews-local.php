<?php
/**
 * Plugin Name: Readers' Views local test tweaks
 * Description: Installed by scripts/wordpress-local.sh. Private test instance only.
 */

// No mail transport on test machines: pretend every wp_mail() succeeded.
add_filter('pre_wp_mail', '__return_true');
